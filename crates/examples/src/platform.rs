//! The three stacks of the seed, wired and applied as one graph: each cluster resource starts as
//! soon as the IAM and network resources it refers to exist; destroy goes the cluster first.

use std::time::{Duration, Instant};

use cluster_stack::{ClusterConfig, ClusterOutputs, ClusterStack};
use iam_stack::{IamConfig, IamOutputs, IamStack, ServiceAccess};
use network_stack::{NetworkConfig, NetworkOutputs, NetworkStack};
use platform_core::policy::{PlanDocument, Policies, Violation};
use platform_core::{
    Engine, Error, Plan, UpOptions, engine::ImportReport, engine::RefreshReport, events::CallStats,
    plan::Counts,
};
use serde::Serialize;

/// The three stacks' outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlatformOutputs {
    /// The IAM stack's.
    pub iam: IamOutputs,
    /// The network stack's.
    pub network: NetworkOutputs,
    /// The cluster stack's.
    pub cluster: ClusterOutputs,
}

/// One stack's part of a run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StackReport {
    /// The stack.
    pub name: String,
    /// What its plan did.
    pub changes: Counts,
}

/// What [`Platform::up`] did.
#[derive(Clone, Debug)]
pub struct UpSummary {
    /// Per stack, in apply order.
    pub stacks: Vec<StackReport>,
    /// The outputs.
    pub outputs: PlatformOutputs,
    /// AWS calls made.
    pub calls: CallStats,
    /// Wall time.
    pub elapsed: Duration,
    /// The advisory policy violations of the plan applied (a mandatory one refuses the run).
    pub violations: Vec<Violation>,
}

/// What [`Platform::preview_checked`] found: the plans, the plan document policies saw, and their
/// violations.
#[derive(Clone, Debug)]
pub struct Preview {
    /// Per stack, in apply order.
    pub plans: Vec<Plan>,
    /// The three stacks' plans as policies see them.
    pub document: PlanDocument,
    /// The violations, mandatory first.
    pub violations: Vec<Violation>,
}

/// The production platform on one engine.
#[derive(Debug)]
pub struct Platform {
    engine: Engine,
    /// The IAM stack's config (bound to the engine's account and region at apply time).
    pub iam: IamConfig,
    /// The network stack's config.
    pub network: NetworkConfig,
    /// The cluster stack's config.
    pub cluster: ClusterConfig,
    /// The policies every plan is checked against before any change: the built-in guardrails
    /// ([`policies::builtin`](crate::policies::builtin)) unless replaced.
    pub policies: Policies,
}

impl Platform {
    /// The seed's platform on `engine`.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            iam: IamConfig::default(),
            network: NetworkConfig::default(),
            cluster: ClusterConfig::default(),
            policies: crate::policies::builtin(&[]),
        }
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The stacks' names, in apply order.
    pub fn stack_names(&self) -> [&str; 3] {
        [
            self.iam.stack_name.as_str(),
            self.network.stack_name.as_str(),
            self.cluster.stack_name.as_str(),
        ]
    }

    /// The IAM stack's config as the platform applies it: [`iam`](Self::iam) with one role for
    /// each of the cluster's services, whose policy allows exactly that service's log group and
    /// secrets (and the S3 assets `iam` gives a service of that name, as the seed's frontend).
    pub fn iam_config(&self) -> IamConfig {
        let services: Vec<ServiceAccess> = self
            .cluster
            .services
            .iter()
            .map(|svc| {
                let assets = self.iam.service(&svc.name).and_then(|s| s.assets.clone());
                ServiceAccess::new(&svc.name, &svc.log_group)
                    .with_secrets(svc.secrets.values().cloned())
                    .with_assets(assets)
            })
            .collect();
        self.iam.clone().with_services(services)
    }

    /// The three stacks, the cluster linked to the IAM and network stacks' resources.
    async fn stacks(&self) -> Result<(IamStack, NetworkStack, ClusterStack), Error> {
        let identity = self.engine.identity().await?;
        let iam = IamStack::new(self.iam_config().bound_to(&identity));
        let net = NetworkStack::new(self.network.clone());
        let cluster = ClusterStack::linked(self.cluster.clone(), &iam.exports(), &net.exports());
        Ok((iam, net, cluster))
    }

    /// What `up` would do, per stack. No change, no AWS call but the identity check.
    ///
    /// # Errors
    /// Validation, state and identity errors.
    pub async fn preview(&self) -> Result<Vec<Plan>, Error> {
        let (iam, net, cluster) = self.stacks().await?;
        let e = &self.engine;
        Ok(vec![
            e.preview(&iam).await?,
            e.preview(&net).await?,
            e.preview(&cluster).await?,
        ])
    }

    /// [`preview`](Self::preview), with the plans checked against the platform's policies as one
    /// document. No change, no AWS call but the identity check.
    ///
    /// # Errors
    /// As [`preview`](Self::preview).
    pub async fn preview_checked(&self) -> Result<Preview, Error> {
        let (iam, net, cluster) = self.stacks().await?;
        let e = &self.engine;
        let (mut plans, mut document) = (Vec::new(), PlanDocument::new(Vec::new()));
        for (plan, doc) in [
            e.preview_document(&iam).await?,
            e.preview_document(&net).await?,
            e.preview_document(&cluster).await?,
        ] {
            plans.push(plan);
            document.extend(doc);
        }
        let violations = self.policies.check(&document);
        Ok(Preview {
            plans,
            document,
            violations,
        })
    }

    /// The three stacks' declarations as one plan document, independent of any state (see
    /// [`PlanDocument::declared`]): what two environments compare.
    ///
    /// # Errors
    /// Validation and identity errors.
    pub async fn declared(&self) -> Result<PlanDocument, Error> {
        let (iam, net, cluster) = self.stacks().await?;
        let mut document = PlanDocument::declared(&iam)?;
        document.extend(PlanDocument::declared(&net)?);
        document.extend(PlanDocument::declared(&cluster)?);
        Ok(document)
    }

    /// The policies' violations in what `reports` found live (after a refresh): a port opened by
    /// hand is a violation as well as a drift.
    pub fn live_violations(&self, reports: &[RefreshReport]) -> Vec<Violation> {
        let live: PlanDocument = reports.iter().map(|r| r.live.clone()).collect();
        self.policies.check(&live)
    }

    /// The plans of `reports` (`preview --refresh`), checked as one document as
    /// [`preview_checked`](Self::preview_checked) checks its own.
    pub fn checked(&self, reports: &[RefreshReport]) -> Preview {
        let document: PlanDocument = reports.iter().map(|r| r.document.clone()).collect();
        Preview {
            plans: reports.iter().map(|r| r.plan.clone()).collect(),
            violations: self.policies.check(&document),
            document,
        }
    }

    /// Reads every recorded resource live (the three stacks at once), records what it found, and
    /// returns per stack the drift and the plan `up` would now make.
    ///
    /// # Errors
    /// As [`Engine::refresh_report`].
    pub async fn refresh(&self) -> Result<Vec<RefreshReport>, Error> {
        let (iam, net, cluster) = self.stacks().await?;
        let e = &self.engine;
        let (i, n, c) = tokio::try_join!(
            e.refresh_report(&iam),
            e.refresh_report(&net),
            e.refresh_report(&cluster)
        )?;
        Ok(vec![i, n, c])
    }

    /// What `up` would do against the live resources: reads every recorded resource first (the
    /// three stacks at once), plans against what it found, records nothing.
    ///
    /// # Errors
    /// As [`Engine::preview_refreshed`].
    pub async fn preview_refreshed(&self) -> Result<Vec<RefreshReport>, Error> {
        let (iam, net, cluster) = self.stacks().await?;
        let e = &self.engine;
        let (i, n, c) = tokio::try_join!(
            e.preview_refreshed(&iam),
            e.preview_refreshed(&net),
            e.preview_refreshed(&cluster)
        )?;
        Ok(vec![i, n, c])
    }

    /// Brings an existing resource under management: `address` is `STACK/RESOURCE` (a stack of the
    /// platform and a resource it declares), `id` the resource's id, name or ARN.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an address that names no stack of the platform or no resource it
    /// declares; as [`Engine::import`] otherwise. The state is untouched on every error.
    pub async fn import(&self, address: &str, id: &str) -> Result<ImportReport, Error> {
        let names = self.stack_names();
        let invalid = |reason: String| Error::Invalid {
            stack: address.split('/').next().unwrap_or_default().to_owned(),
            resource: "import".into(),
            source: platform_core::ValidationError::new("address", address, reason),
        };
        let Some((stack, resource)) = address.split_once('/') else {
            return Err(invalid("expected STACK/RESOURCE, e.g. network/vpc".into()));
        };
        let (iam, net, cluster) = self.stacks().await?;
        let e = &self.engine;
        match names.iter().position(|n| *n == stack) {
            Some(0) => e.import(&iam, resource, id).await,
            Some(1) => e.import(&net, resource, id).await,
            Some(2) => e.import(&cluster, resource, id).await,
            _ => Err(invalid(format!(
                "the platform has no stack {stack} (its stacks: {})",
                names.join(", ")
            ))),
        }
    }

    /// Brings the platform up: the three stacks as one graph, each resource as soon as what it
    /// refers to exists (see [`StackGroup`](platform_core::StackGroup)).
    ///
    /// # Errors
    /// The error that stopped the run (rather than the ones it caused in the other stacks); what
    /// completed is recorded.
    pub async fn up(&self) -> Result<UpSummary, Error> {
        self.up_with(UpOptions::default()).await
    }

    /// [`up`](Self::up) with options (a refresh first).
    ///
    /// # Errors
    /// As [`up`](Self::up).
    pub async fn up_with(&self, options: UpOptions) -> Result<UpSummary, Error> {
        let started = Instant::now();
        let before = self.engine.calls();
        let (iam_stack, net_stack, cluster_stack) = self.stacks().await?;
        let group = self.engine.group(self.stack_names());
        let options = options.with_policies(self.policies.clone());
        let (iam, net, cluster) = all_ok(tokio::join!(
            group.up(&iam_stack, options.clone()),
            group.up(&net_stack, options.clone()),
            group.up(&cluster_stack, options)
        ))?;
        Ok(UpSummary {
            stacks: vec![
                StackReport {
                    name: iam.plan.stack.clone(),
                    changes: iam.plan.counts(),
                },
                StackReport {
                    name: net.plan.stack.clone(),
                    changes: net.plan.counts(),
                },
                StackReport {
                    name: cluster.plan.stack.clone(),
                    changes: cluster.plan.counts(),
                },
            ],
            outputs: PlatformOutputs {
                iam: iam.outputs,
                network: net.outputs,
                cluster: cluster.outputs,
            },
            calls: self.engine.calls().since(&before),
            elapsed: started.elapsed(),
            // Every member was checked against the same document: one member's list is the group's.
            violations: iam.violations,
        })
    }

    /// Deletes everything, the three stacks together: each IAM and network resource as soon as
    /// the cluster resources that used it are gone. Returns how many resources each stack had.
    ///
    /// # Errors
    /// The error that stopped the run; what was deleted is recorded.
    pub async fn destroy(&self) -> Result<Vec<(String, usize)>, Error> {
        let [iam, net, cluster] = self.stack_names();
        let group = self.engine.group([iam, net, cluster]);
        let (i, n, c) = all_ok(tokio::join!(
            group.destroy::<IamStack>(iam),
            group.destroy::<NetworkStack>(net),
            group.destroy::<ClusterStack>(cluster)
        ))?;
        Ok(vec![
            (cluster.to_owned(), c.deleted),
            (iam.to_owned(), i.deleted),
            (net.to_owned(), n.deleted),
        ])
    }

    /// The recorded outputs, when all three stacks are up.
    ///
    /// # Errors
    /// [`Error::StackNotFound`] naming the first stack that is not; state errors.
    pub async fn outputs(&self) -> Result<PlatformOutputs, Error> {
        let [iam, net, cluster] = self.stack_names();
        Ok(PlatformOutputs {
            iam: self.engine.outputs::<IamStack>(iam).await?,
            network: self.engine.outputs::<NetworkStack>(net).await?,
            cluster: self.engine.outputs::<ClusterStack>(cluster).await?,
        })
    }
}

/// The three members' results when all succeeded; else, of their errors, the one that stopped the
/// run: not one that only says another member stopped first.
#[expect(
    clippy::result_large_err,
    reason = "the same Error every public method of Platform returns"
)]
fn all_ok<A, B, C>(
    results: (Result<A, Error>, Result<B, Error>, Result<C, Error>),
) -> Result<(A, B, C), Error> {
    let (a, b, c) = match results {
        (Ok(a), Ok(b), Ok(c)) => return Ok((a, b, c)),
        (a, b, c) => (a.err(), b.err(), c.err()),
    };
    let mut errors: Vec<Error> = [a, b, c].into_iter().flatten().collect();
    let knock_on = |e: &Error| {
        matches!(
            e,
            Error::GroupMemberInvalid { .. } | Error::DependencyFailed { .. }
        )
    };
    let pick = errors.iter().position(|e| !knock_on(e)).unwrap_or(0);
    Err(errors.swap_remove(pick))
}
