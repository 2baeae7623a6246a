//! The three stacks of the seed, wired: IAM and network in parallel, then the cluster on their
//! outputs; destroy in the reverse order.

use std::time::{Duration, Instant};

use cluster_stack::{ClusterConfig, ClusterOutputs, ClusterStack};
use iam_stack::{IamConfig, IamOutputs, IamStack, RoleInfo};
use network_stack::{
    InternetGatewayId, NetworkConfig, NetworkOutputs, NetworkStack, RouteTableId, SecurityGroupId,
    SubnetId, VpcId,
};
use platform_core::{CallStats, Counts, Engine, Error, Plan, UNKNOWN, UpOptions};
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
}

impl Platform {
    /// The seed's platform on `engine`.
    pub fn new(engine: Engine) -> Self {
        Self {
            engine,
            iam: IamConfig::default(),
            network: NetworkConfig::default(),
            cluster: ClusterConfig::default(),
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

    async fn iam_stack(&self) -> Result<IamStack, Error> {
        let identity = self.engine.identity().await?;
        Ok(IamStack::new(self.iam.clone().bound_to(&identity)))
    }

    /// The cluster stack on the recorded IAM and network outputs; before those exist, on
    /// placeholders shown as "(known after apply)".
    async fn cluster_for_preview(&self) -> Result<ClusterStack, Error> {
        match ClusterStack::from_state(self.cluster.clone(), self.engine.store()).await {
            Ok(stack) => Ok(stack),
            Err(Error::StackNotFound { .. }) => Ok(ClusterStack::new(
                self.cluster.clone(),
                &unknown_iam(),
                &unknown_network(),
            )),
            Err(e) => Err(e),
        }
    }

    /// What `up` would do, per stack. No change, no AWS call but the identity check.
    ///
    /// # Errors
    /// Validation, state and identity errors.
    pub async fn preview(&self) -> Result<Vec<Plan>, Error> {
        let iam = self.engine.preview(&self.iam_stack().await?).await?;
        let net = self
            .engine
            .preview(&NetworkStack::new(self.network.clone()))
            .await?;
        let cluster = self
            .engine
            .preview(&self.cluster_for_preview().await?)
            .await?;
        Ok(vec![iam, net, cluster])
    }

    /// Reads every recorded resource live and returns the plans `up` would now make.
    ///
    /// # Errors
    /// As [`Engine::refresh`].
    pub async fn refresh(&self) -> Result<Vec<Plan>, Error> {
        let iam = self.engine.refresh(&self.iam_stack().await?).await?;
        let net = self
            .engine
            .refresh(&NetworkStack::new(self.network.clone()))
            .await?;
        let cluster = self
            .engine
            .refresh(&self.cluster_for_preview().await?)
            .await?;
        Ok(vec![iam, net, cluster])
    }

    /// Brings the platform up: IAM and network in parallel, then the cluster on their outputs.
    ///
    /// # Errors
    /// The first stack's error; what completed is recorded.
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
        let iam_stack = self.iam_stack().await?;
        let net_stack = NetworkStack::new(self.network.clone());
        let (iam, net) = tokio::try_join!(
            self.engine.up_with(&iam_stack, options),
            self.engine.up_with(&net_stack, options)
        )?;
        let cluster_stack = ClusterStack::new(self.cluster.clone(), &iam.outputs, &net.outputs);
        let cluster = self.engine.up_with(&cluster_stack, options).await?;
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
        })
    }

    /// Deletes everything: the cluster first, then IAM and network in parallel. Returns how many
    /// resources each stack had.
    ///
    /// # Errors
    /// The first stack's error; what was deleted is recorded.
    pub async fn destroy(&self) -> Result<Vec<(String, usize)>, Error> {
        let [iam, net, cluster] = self.stack_names();
        let c = self.engine.destroy::<ClusterStack>(cluster).await?;
        let (i, n) = tokio::try_join!(
            self.engine.destroy::<IamStack>(iam),
            self.engine.destroy::<NetworkStack>(net)
        )?;
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

fn unknown_iam() -> IamOutputs {
    let role = || RoleInfo {
        name: UNKNOWN.into(),
        arn: UNKNOWN.into(),
    };
    IamOutputs {
        account_id: UNKNOWN.into(),
        region: UNKNOWN.into(),
        cluster_role: role(),
        instance_role: role(),
        frontend_role: role(),
        cluster_policy_arn: UNKNOWN.into(),
        instance_policy_arn: UNKNOWN.into(),
        frontend_policy_arn: UNKNOWN.into(),
        instance_profile_name: UNKNOWN.into(),
        instance_profile_arn: UNKNOWN.into(),
    }
}

fn unknown_network() -> NetworkOutputs {
    NetworkOutputs {
        vpc_id: VpcId(UNKNOWN.into()),
        vpc_cidr: UNKNOWN.into(),
        public_subnet_ids: vec![SubnetId(UNKNOWN.into())],
        availability_zones: vec![UNKNOWN.into()],
        security_group_id: SecurityGroupId(UNKNOWN.into()),
        route_table_id: RouteTableId(UNKNOWN.into()),
        internet_gateway_id: InternetGatewayId(UNKNOWN.into()),
    }
}
