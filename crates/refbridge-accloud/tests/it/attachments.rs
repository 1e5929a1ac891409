//! The attachment upload: one multipart part `file` with the file name, streamed from disk
//! with a known length, and the local refusals that send nothing.

use std::io::Write;
use std::time::Duration;

use refbridge_accloud::{AcCloud, AcCloudError, AttachmentUpload, MAX_ATTACHMENT_BYTES};
use serde_json::json;

use crate::helpers::{Peer, Reply};
use crate::samples::referral_id;

fn upload(path: &std::path::Path, name: &str) -> AttachmentUpload {
    AttachmentUpload {
        path: path.to_owned(),
        file_name: name.to_owned(),
        content_type: Some("application/pdf".into()),
    }
}

#[tokio::test]
async fn upload_sends_one_file_part_with_its_name_and_a_known_length() {
    let peer = Peer::always(Reply::json(
        201,
        json!({"filepath": "client/1060/Marketplace Documents/rb-1 care plan.pdf"}),
    ))
    .await;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    file.write_all(&content).unwrap();
    file.flush().unwrap();

    let done = peer
        .client(Duration::from_secs(5))
        .upload_client_attachment(referral_id(), &upload(file.path(), "rb-1 care plan.pdf"))
        .await
        .unwrap();
    assert_eq!(
        done.filepath,
        "client/1060/Marketplace Documents/rb-1 care plan.pdf"
    );
    assert_eq!(done.size, content.len() as u64);

    let r = peer.only_request();
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        "/api/v1/alayamarket/outbox/referrals/0b7e8f6a-1111-4a3c-9d7e-2f4a5b6c7d8e/client_attachment"
    );
    assert_eq!(r.header("authorization"), Some("Basic a2V5OnNlY3JldA=="));
    let ct = r.header("content-type").unwrap();
    let boundary = ct
        .strip_prefix("multipart/form-data; boundary=")
        .unwrap_or_else(|| panic!("content type {ct}"));
    // Known length: Content-Length set, not chunked.
    assert_eq!(
        r.header("content-length")
            .map(|v| v.parse::<usize>().unwrap()),
        Some(r.body.len())
    );
    assert!(r.header("transfer-encoding").is_none());

    let mut expected = Vec::new();
    expected.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    expected.extend_from_slice(
        b"Content-Disposition: form-data; name=\"file\"; filename=\"rb-1 care plan.pdf\"\r\n",
    );
    expected.extend_from_slice(b"Content-Type: application/pdf\r\n\r\n");
    expected.extend_from_slice(&content);
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert!(r.body[..] == expected[..], "multipart body differs");
}

#[tokio::test]
async fn oversize_missing_or_badly_named_files_are_refused_before_sending() {
    let peer = Peer::always(Reply::json(201, json!({"filepath": "x"}))).await;
    let client = peer.client(Duration::from_secs(5));

    let big = tempfile::NamedTempFile::new().unwrap();
    big.as_file().set_len(MAX_ATTACHMENT_BYTES + 1).unwrap();
    let err = client
        .upload_client_attachment(referral_id(), &upload(big.path(), "big.pdf"))
        .await
        .unwrap_err();
    assert!(matches!(err, AcCloudError::InvalidRequest { .. }), "{err}");

    let missing = big.path().with_extension("missing");
    let err = client
        .upload_client_attachment(referral_id(), &upload(&missing, "m.pdf"))
        .await
        .unwrap_err();
    assert!(matches!(err, AcCloudError::InvalidRequest { .. }), "{err}");

    let small = tempfile::NamedTempFile::new().unwrap();
    for name in ["", "a/b.pdf", "a\r\nb.pdf"] {
        let err = client
            .upload_client_attachment(referral_id(), &upload(small.path(), name))
            .await
            .unwrap_err();
        assert!(
            matches!(err, AcCloudError::InvalidRequest { .. }),
            "{name:?}: {err}"
        );
    }
    assert!(peer.requests().is_empty());

    // Exactly at the limit goes out.
    big.as_file().set_len(MAX_ATTACHMENT_BYTES).unwrap();
    client
        .upload_client_attachment(referral_id(), &upload(big.path(), "big.pdf"))
        .await
        .unwrap();
    assert_eq!(peer.requests().len(), 1);
}
