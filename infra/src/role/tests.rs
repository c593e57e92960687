use super::*;

#[test]
fn policy_is_least_privilege() {
    let doc = policy_document(
        "arn:aws:secretsmanager:us-east-1:1:secret:claude-proxy/dev-AbCdEf",
        "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/claude-proxy-dev:*",
    );
    let text = doc.to_string();
    assert!(!text.contains("\"*\""));
    assert!(!text.contains("secret:claude-proxy/dev*"));
    let actions: Vec<&str> = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Action"].as_array().unwrap())
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "secretsmanager:GetSecretValue",
            "logs:CreateLogStream",
            "logs:PutLogEvents"
        ]
    );
}

#[test]
fn decodes_url_encoded_documents() {
    let doc = trust_policy();
    let encoded: String = doc
        .to_string()
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    assert_eq!(decode_document(&encoded).unwrap(), doc);
    assert_eq!(decode_document(&doc.to_string()).unwrap(), doc);
}
