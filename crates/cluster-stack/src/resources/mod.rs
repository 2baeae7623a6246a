//! The cluster stack's resource types, one module each with its create / read / update / delete.

mod cluster;
mod log_group;
mod service;
mod task_definition;

pub use cluster::{Cluster, ClusterOutputs, ClusterRefs, ContainerInsights};
pub use log_group::{LogGroup, LogGroupOutputs, LogGroupRefs};
pub use service::{Deployment, Launch, Service, ServiceOutputs, ServiceRefs};
pub use task_definition::{Container, TaskDefinition, TaskDefinitionOutputs, TaskDefinitionRefs};
