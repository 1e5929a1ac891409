//! One file of the referral, uploaded to the client's attachments through the referral,
//! under the name it was given made safe ([`files::delivered_name`]).
//!
//! Found again after an unknown outcome in the Files API listing of the client's attachments
//! folder: an entry under that name, or under `name (n).ext` (what ACCloud stores when the
//! name was taken), of the same size, that no step has recorded as its own upload (of this
//! referral or another of the client's), whose content has the same SHA-256 (downloaded and
//! hashed). Two documents of one name stay apart by content, and a content is delivered once
//! per referral ([`files::by_content`]), so the match is exact.

use refbridge_accloud::{AcCloudError, AttachmentUpload, ClientId, FileEntry, ReferralId};
use refbridge_domain::send::{AttachmentResult, NaturalKey, StepResult, files, keys};
use refbridge_domain::{ContentHash, FileId};
use refbridge_storage::{BlobError, FileRecord, LocalBlob};
use sha2::{Digest, Sha256};

use super::{Done, Outcome, SendStep, StepCx, missing};

/// The referral request's file with this id.
pub struct Attachment(pub FileId);

impl SendStep for Attachment {
    /// The upload reads the body from a local file: the folder backend's own, or a copy
    /// fetched for the step (removed with the request).
    type Request = (ReferralId, AttachmentUpload, LocalBlob);

    async fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> Result<Result<Self::Request, Outcome>, AcCloudError> {
        let input = cx.input;
        let (Some(referral), Some(file)) = (cx.ctx.referral, input.file(self.0)) else {
            return Ok(Err(missing("the referral or file")));
        };
        let local = match input.files_root.local_copy(&file.sha256).await {
            Ok(local) => local,
            Err(e @ (BlobError::NotFound(..) | BlobError::Corrupt { .. })) => {
                return Ok(Err(Outcome::Fail(format!("file {}: {e}", file.id))));
            }
            // The blob backend is unreachable for now: like a transient ACCloud failure.
            Err(e) => {
                return Ok(Err(Outcome::Retry {
                    state: refbridge_domain::send::StepState::Pending,
                    after: std::time::Duration::from_secs(5),
                    error: format!("file {}: {e}", file.id),
                    count: true,
                }));
            }
        };
        Ok(Ok((
            referral,
            AttachmentUpload {
                path: local.path().to_owned(),
                file_name: files::delivered_name(&file.name),
                content_type: Some(file.media_type.clone()),
            },
            local,
        )))
    }

    fn natural_key(&self, cx: &StepCx<'_>, (_, upload, _): &Self::Request) -> NaturalKey {
        let input = cx.input;
        let (size, sha256) = input
            .file(self.0)
            .map(|f| (f.size, f.sha256.to_string()))
            .unwrap_or_default();
        NaturalKey::Attachment(keys::attachment(
            cx.ctx.client.map(|c| c.get()),
            input.attachments_folder,
            &upload.file_name,
            size,
            &sha256,
        ))
    }

    async fn find(
        &self,
        cx: &StepCx<'_>,
        _key: Option<&NaturalKey>,
    ) -> Result<Option<Outcome>, AcCloudError> {
        let input = cx.input;
        let (Some(client), Some(file)) = (cx.ctx.client, input.file(self.0)) else {
            return Ok(Some(missing("the client or file")));
        };
        let name = files::delivered_name(&file.name);
        let Some(entries) = cx
            .ac
            .list_client_files(client, input.attachments_folder)
            .await?
        else {
            return Ok(None);
        };
        let candidates = entries.into_iter().filter(|e| {
            !e.is_dir()
                && files::is_stored_as(&name, e.basename())
                && e.size == u64::try_from(file.size).ok()
                && !input.claimed_files.contains(&e.name)
        });
        for entry in candidates {
            if same_content(cx, client, &entry, file).await? {
                return Ok(Some(
                    Done::new(
                        entry.name.clone(),
                        StepResult::Attachment(AttachmentResult {
                            filepath: entry.name,
                            file_name: name,
                            size: file.size,
                            found_by_lookup: true,
                        }),
                    )
                    .into(),
                ));
            }
        }
        Ok(None)
    }

    async fn call(
        &self,
        cx: &StepCx<'_>,
        (referral, upload, _): &Self::Request,
    ) -> Result<Outcome, AcCloudError> {
        let r = cx.ac.upload_client_attachment(*referral, upload).await?;
        Ok(Done::new(
            r.filepath.clone(),
            StepResult::Attachment(AttachmentResult {
                filepath: r.filepath,
                file_name: upload.file_name.clone(),
                size: i64::try_from(r.size).unwrap_or(i64::MAX),
                found_by_lookup: false,
            }),
        )
        .into())
    }
}

/// Whether the stored entry holds the file's bytes.
async fn same_content(
    cx: &StepCx<'_>,
    client: ClientId,
    entry: &FileEntry,
    file: &FileRecord,
) -> Result<bool, AcCloudError> {
    let path = format!("{}/{}", cx.input.attachments_folder, entry.basename());
    let Some(bytes) = cx.ac.download_client_file(client, &path).await? else {
        return Ok(false);
    };
    let digest: [u8; 32] = Sha256::digest(&bytes).into();
    Ok(ContentHash::from_digest(&digest) == file.sha256)
}
