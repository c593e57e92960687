//! Partition profile of the proxy: AWS outside the `aws` partition (China `aws-cn`,
//! GovCloud `aws-us-gov`, ...).
//!
//! moto derives the partition from the Region (a `cn-north-1` client gets `arn:aws-cn:`
//! ARNs back from STS, IAM, Lambda, ...), but accepts whatever ARNs it is sent. Real AWS does
//! not: IAM refuses a policy naming a resource in another partition with
//! `MalformedPolicyDocument: Partition "aws" is not valid for resource "arn:aws:..."`, and
//! the other services refuse an ARN of another partition as invalid. With this profile on,
//! the proxy answers that way: any request, signed for a Region of partition P, whose body
//! or path names an `arn:<other>:` ARN is refused without reaching moto.

/// The partition of a Region, by its prefix (as AWS and moto derive it).
pub fn partition_of_region(region: &str) -> &'static str {
    const PREFIXES: &[(&str, &str)] = &[
        ("cn-", "aws-cn"),
        ("us-gov-", "aws-us-gov"),
        ("us-isob-", "aws-iso-b"),
        ("us-iso-", "aws-iso"),
        ("eusc-", "aws-eusc"),
    ];
    PREFIXES
        .iter()
        .find(|(p, _)| region.starts_with(p))
        .map(|(_, p)| *p)
        .unwrap_or("aws")
}

/// `%XX` and (in form bodies) `+` decoded.
pub(crate) fn url_decode(s: &str, plus_is_space: bool) -> String {
    let s = match plus_is_space {
        true => std::borrow::Cow::Owned(s.replace('+', " ")),
        false => std::borrow::Cow::Borrowed(s),
    };
    percent_encoding::percent_decode_str(&s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The first ARN in `text` whose partition is not `partition`.
fn foreign_arn(text: &str, partition: &str) -> Option<String> {
    let mut rest = text;
    while let Some(at) = rest.find("arn:") {
        let candidate = &rest[at..];
        let end = candidate
            .find(|c: char| {
                c == '"'
                    || c == '\''
                    || c == '&'
                    || c == ','
                    || c.is_whitespace()
                    || c == '<'
                    || c == ']'
            })
            .unwrap_or(candidate.len());
        let arn = &candidate[..end];
        let p = arn.split(':').nth(1).unwrap_or_default();
        // Only real ARNs (`arn:<partition>:<service>:...`); not e.g. the text "arn:" alone.
        if arn.split(':').count() >= 6 && p != partition {
            return Some(arn.to_string());
        }
        rest = &candidate[4..];
    }
    None
}

/// The refusal, as (status, error code, message), for a request signed for `region` to
/// `service`, or `None` when every ARN it names is in the Region's partition.
pub fn check(
    region: &str,
    service: &str,
    path: &str,
    body: &[u8],
    form: bool,
) -> Option<(u16, String, String)> {
    let partition = partition_of_region(region);
    let text = String::from_utf8_lossy(body);
    let decoded = if form {
        url_decode(&text, true)
    } else {
        text.into_owned()
    };
    let path = url_decode(path, false);
    let arn = foreign_arn(&decoded, partition).or_else(|| foreign_arn(&path, partition))?;
    let used = arn.split(':').nth(1).unwrap_or_default().to_string();
    Some(match service {
        "iam" => (
            400,
            "MalformedPolicyDocument".into(),
            format!("Partition \"{used}\" is not valid for resource \"{arn}\"."),
        ),
        "lambda" => (
            400,
            "InvalidParameterValueException".into(),
            format!("The ARN {arn} is not valid in partition {partition}."),
        ),
        "apigateway" => (
            400,
            "BadRequestException".into(),
            format!("Invalid ARN specified in the request: {arn}"),
        ),
        _ => (
            400,
            "ValidationException".into(),
            format!("Invalid Arn: partition \"{used}\" is not valid in {partition}: {arn}"),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_foreign_arns_in_form_bodies_and_paths() {
        let body = b"Action=PutRolePolicy&PolicyDocument=%7B%22Resource%22%3A%5B%22arn%3Aaws%3Alogs%3Acn-north-1%3A1%3Alog-group%3Ax%3A%2A%22%5D%7D";
        let (status, code, msg) = check("cn-north-1", "iam", "/", body, true).unwrap();
        assert_eq!((status, code.as_str()), (400, "MalformedPolicyDocument"));
        assert_eq!(
            msg,
            "Partition \"aws\" is not valid for resource \"arn:aws:logs:cn-north-1:1:log-group:x:*\"."
        );
        let ok = b"PolicyDocument=%22arn%3Aaws-cn%3Alogs%3Acn-north-1%3A1%3Alog-group%3Ax%3A%2A%22";
        assert!(check("cn-north-1", "iam", "/", ok, true).is_none());
        assert!(check("us-east-1", "iam", "/", body, true).is_none());
        assert!(check(
            "us-gov-west-1",
            "lambda",
            "/2017-03-31/tags/arn%3Aaws%3Alambda%3Aus-gov-west-1%3A1%3Afunction%3Af",
            b"",
            false
        )
        .is_some());
    }
}
