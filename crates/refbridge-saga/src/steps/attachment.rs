//! One file of the referral, uploaded to the client's attachments through the referral.
//! Found again in the Files API listing of the client's attachments folder by its name
//! (unique per document, see [`wire::attachment_name`]) and size.

use refbridge_accloud::{AcCloudError, AttachmentUpload, ReferralId};
use refbridge_domain::FileId;
use refbridge_domain::send::{AttachmentResult, NaturalKey, StepResult, keys};

use super::{Done, Outcome, SendStep, StepCx, missing, wire};

/// The referral request's file with this id.
pub struct Attachment(pub FileId);

impl SendStep for Attachment {
    type Request = (ReferralId, AttachmentUpload);

    async fn prepare(
        &self,
        cx: &StepCx<'_>,
    ) -> Result<Result<Self::Request, Outcome>, AcCloudError> {
        let input = cx.input;
        let (Some(referral), Some(file)) = (cx.ctx.referral, input.file(self.0)) else {
            return Ok(Err(missing("the referral or file")));
        };
        Ok(Ok((
            referral,
            AttachmentUpload {
                path: input.files_root.path_of(&file.sha256),
                file_name: wire::attachment_name(&input.rec.request_id.to_string(), file),
                content_type: Some(file.media_type.clone()),
            },
        )))
    }

    fn natural_key(&self, cx: &StepCx<'_>, (_, upload): &Self::Request) -> NaturalKey {
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
        let name = wire::attachment_name(&input.rec.request_id.to_string(), file);
        let entries = cx
            .ac
            .list_client_files(client, input.attachments_folder)
            .await?;
        Ok(entries.and_then(|entries| {
            entries
                .into_iter()
                .find(|e| !e.is_dir() && e.basename() == name && e.size == Some(file.size as u64))
                .map(|e| {
                    Done::new(
                        e.name.clone(),
                        StepResult::Attachment(AttachmentResult {
                            filepath: e.name,
                            file_name: name,
                            size: file.size,
                            found_by_lookup: true,
                        }),
                    )
                    .into()
                })
        }))
    }

    async fn call(
        &self,
        cx: &StepCx<'_>,
        (referral, upload): &Self::Request,
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
