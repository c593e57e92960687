//! Actual state: what the account holds for a stack, found by deterministic names (and, for
//! HTTP APIs, by tags). The plan is a pure function of it, so tests build one by hand.

use crate::aws::Aws;
use crate::names::{self, Names};
use crate::{
    alarm, alias, bedrock, concurrency, ecr, function, function_url, http_api, layer, log_group,
    permission, rest_api, role, secret, topic, version,
};
use anyhow::Result;

#[derive(Debug, Clone, Default)]
pub struct Actual {
    pub account_id: String,
    pub region: String,
    /// The ARN partition of the account (`aws`, `aws-cn`, `aws-us-gov`, ...).
    pub partition: String,
    pub secret: Option<secret::State>,
    pub log_group: Option<log_group::State>,
    pub role: Option<role::State>,
    pub function: Option<function::State>,
    /// Reserved concurrency of the function, if any.
    pub concurrency: Option<i32>,
    /// The URL of the alias `live`.
    pub function_url: Option<function_url::State>,
    /// A URL of the unqualified function (a stack deployed before releases).
    pub unqualified_function_url: Option<function_url::State>,
    /// The function's published versions, oldest first.
    pub versions: Vec<version::State>,
    /// The alias `live`.
    pub alias: Option<alias::State>,
    /// The toolkit's statements in the resource policies of the function and its alias.
    pub permissions: Vec<permission::Statement>,
    /// HTTP APIs with the stack's name or tags (normally zero or one).
    pub http_apis: Vec<http_api::State>,
    /// REST APIs with the stack's name or tags (normally zero or one).
    pub rest_apis: Vec<rest_api::State>,
    /// The REST API's usage plan and the stack's API keys.
    pub usage_plan: rest_api::usage_plan::State,
    /// Versions of the stack's layer, newest first.
    pub layer_versions: Vec<layer::Version>,
    /// The stack's ECR repository.
    pub repository: Option<ecr::State>,
    /// The Bedrock inference profiles the desired stack names, as `GetInferenceProfile`
    /// answered (filled by [`read_for`]; empty for other providers and teardowns).
    pub bedrock_profiles: bedrock::ProfileLookups,
    /// The SNS topic the stack's alarms notify.
    pub topic: Option<topic::State>,
    /// The stack's CloudWatch alarms (read when its topic exists: every alarm the toolkit
    /// makes notifies it, is created after it and deleted before it).
    pub alarms: Vec<alarm::State>,
    /// The account's Lambda concurrency in the Region (`GetAccountSettings`); `None` when
    /// not read (fixed test states).
    pub account_concurrency: Option<concurrency::AccountConcurrency>,
}

impl Actual {
    /// An account holding nothing for the stack (in the Region's partition).
    pub fn empty(account_id: &str, region: &str) -> Actual {
        Actual {
            account_id: account_id.to_string(),
            region: region.to_string(),
            partition: crate::aws::partition_of_region(region).to_string(),
            ..Default::default()
        }
    }

    /// True when nothing of the stack exists.
    pub fn is_empty(&self) -> bool {
        self.secret.is_none()
            && self.log_group.is_none()
            && self.role.is_none()
            && self.function.is_none()
            && self.function_url.is_none()
            && self.unqualified_function_url.is_none()
            && self.versions.is_empty()
            && self.alias.is_none()
            && self.permissions.is_empty()
            && self.http_apis.is_empty()
            && self.rest_apis.is_empty()
            && self.usage_plan.is_empty()
            && self.layer_versions.is_empty()
            && self.repository.is_none()
            && self.topic.is_none()
            && self.alarms.is_empty()
    }
}

/// Reads every resource of the stack from the account.
pub async fn read_actual(aws: &Aws, stack: &str) -> Result<Actual> {
    crate::names::validate_stack_name(stack)?;
    let names = Names::new(stack);
    // Every read at once, the function's concurrency, URL and policy too (they answer not
    // found when there is no function): reading costs the slowest read, not their sum.
    // Boxed: the joined reads make a large future; keep it off the caller's stack.
    let (resources, function_parts, account_concurrency) = Box::pin(async {
        tokio::join!(
            async {
                tokio::try_join!(
                    secret::read(aws, &names),
                    log_group::read(aws, &names),
                    role::read(aws, &names),
                    function::read(aws, &names),
                    http_api::read(aws, &names),
                    // Boxed so the joined future stays small (callers run it on small test stacks).
                    Box::pin(layer::read(aws, &names)),
                    Box::pin(ecr::read(aws, &names)),
                    Box::pin(rest_api::read(aws, &names)),
                    Box::pin(rest_api::usage_plan::read(aws, &names)),
                    Box::pin(read_alarms(aws, &names)),
                )
            },
            // The alias's URL and statements are read as if it existed (they answer not found
            // when it does not) and kept only when it does.
            async {
                tokio::try_join!(
                    concurrency::read(aws, &names.function),
                    version::read(aws, &names.function),
                    alias::read(aws, &names.function),
                    function_url::read(aws, &names.function, Some(names::ALIAS)),
                    function_url::read(aws, &names.function, None),
                    permission::read(aws, &names.function, true),
                )
            },
            // Never fails: what the endpoint refuses becomes a note in the plan.
            concurrency::read_account(aws),
        )
    })
    .await;
    let (
        secret,
        log_group,
        role,
        function,
        http_apis,
        layer_versions,
        repository,
        rest_apis,
        usage_plan,
        (topic, alarms),
    ) = resources?;
    let (concurrency, versions, alias, function_url, mut unqualified_function_url, permissions) =
        match function.is_some() {
            true => function_parts?,
            false => (None, Vec::new(), None, None, None, Vec::new()),
        };
    let function_url = function_url.filter(|_| alias.is_some());
    // moto keeps one URL per function whatever the qualifier: the same address is the
    // alias's.
    if let (Some(a), Some(u)) = (&function_url, &unqualified_function_url) {
        if a.url == u.url {
            unqualified_function_url = None;
        }
    }
    Ok(Actual {
        account_id: aws.account_id.clone(),
        region: aws.region.clone(),
        partition: aws.partition.clone(),
        secret,
        log_group,
        role,
        function,
        concurrency,
        function_url,
        unqualified_function_url,
        versions,
        alias,
        permissions,
        http_apis,
        rest_apis,
        usage_plan,
        layer_versions,
        repository,
        topic,
        alarms,
        bedrock_profiles: Default::default(),
        account_concurrency: Some(account_concurrency),
    })
}

/// The alarms' topic, then (when it exists) the alarms. Alarms are not looked for without
/// their topic: no alarm of the toolkit outlives it (created after it, deleted before it),
/// and endpoints without CloudWatch (moto) still serve stacks without `[alarms]`.
async fn read_alarms(
    aws: &Aws,
    names: &Names,
) -> Result<(Option<topic::State>, Vec<alarm::State>)> {
    let topic = topic::read(aws, names).await?;
    let alarms = match &topic {
        Some(_) => alarm::read(aws, names).await?,
        None => Vec::new(),
    };
    Ok((topic, alarms))
}

/// Reads the stack as [`read_actual`] does, plus what the desired stack depends on in the
/// account: the Bedrock inference profiles it names (`bedrock:GetInferenceProfile`).
pub async fn read_for(aws: &Aws, desired: &crate::desired::Desired) -> Result<Actual> {
    let mut actual = read_actual(aws, &desired.stack).await?;
    if let Some(s) = &desired.spec {
        let p = &s.config.provider;
        if p.uses(crate::config::ProviderKind::Bedrock) {
            let region = p.bedrock_region.as_deref().unwrap_or(&aws.region);
            actual.bedrock_profiles = bedrock::read(aws, region, p.bedrock_models.values()).await?;
        }
    }
    Ok(actual)
}
