//! The cluster stack's resource types, one module each with its create / read / update / delete.

mod autoscaling;
mod cluster;
mod listener;
mod listener_rule;
mod load_balancer;
mod log_group;
mod service;
mod target_group;
mod task_definition;

pub use autoscaling::{ServiceScaling, ServiceScalingOutputs, ServiceScalingRefs};
pub use cluster::{Cluster, ContainerInsights, EcsClusterOutputs, EcsClusterRefs};
pub use listener::{Listener, ListenerDefault, ListenerOutputs, ListenerRefs};
pub use listener_rule::{ListenerRule, ListenerRuleOutputs, ListenerRuleRefs};
pub use load_balancer::{LoadBalancer, LoadBalancerOutputs, LoadBalancerRefs};
pub use log_group::{LogGroup, LogGroupOutputs, LogGroupRefs};
pub use service::{Deployment, Launch, Service, ServiceOutputs, ServiceRefs, ServiceTarget};
pub use target_group::{TargetGroup, TargetGroupOutputs, TargetGroupRefs, TargetHealthCheck};
pub use task_definition::{
    Container, HealthCheck, TaskDefinition, TaskDefinitionOutputs, TaskDefinitionRefs,
};

/// Each kind's replacement rule: what its `force_new` names, and that the fields changed in place
/// are not among them.
#[cfg(test)]
mod force_new {
    use platform_core::testing::{forced_by as forced, inputs as sample, replaces};
    use platform_core::{ForceNew, Resource};
    use serde_json::json;

    use super::*;

    #[test]
    fn cluster_and_log_group_are_replaced_for_a_new_name_only() {
        let c: Cluster = sample(json!({"name": "c", "container_insights": "enabled", "tags": {}}));
        assert_eq!(forced(&c, "name", json!("d")), replaces("name"));
        assert_eq!(
            forced(&c, "container_insights", json!("disabled")),
            ForceNew::none()
        );
        let g: LogGroup = sample(json!({"name": "/ecs/a", "retention_days": 7, "tags": {}}));
        assert_eq!(forced(&g, "name", json!("/ecs/b")), replaces("name"));
        assert_eq!(forced(&g, "retention_days", json!(30)), ForceNew::none());
        assert_eq!(forced(&g, "tags", json!({"a": "b"})), ForceNew::none());
    }

    #[test]
    fn a_task_definition_revision_is_never_changed_in_place() {
        let t: TaskDefinition = sample(json!({"family": "f", "cpu": 256, "memory": 512,
            "execution_role_arn": "arn:aws:iam::1:role/e", "task_role_arn": "arn:aws:iam::1:role/t",
            "containers": [], "tags": {}}));
        assert_eq!(forced(&t, "cpu", json!(512)), ForceNew::any_change());
        assert_eq!(
            forced(&t, "tags", json!({"a": "b"})),
            ForceNew::any_change()
        );
    }

    #[test]
    fn a_task_definition_is_checked_before_any_call() {
        let t = |cpu: u32, containers: serde_json::Value| -> TaskDefinition {
            sample(json!({"family": "f", "cpu": cpu, "memory": 512,
                "execution_role_arn": "arn:aws:iam::1:role/e", "task_role_arn": "arn:aws:iam::1:role/t",
                "containers": containers, "tags": {}}))
        };
        assert_eq!(
            t(256, json!([])).validate().unwrap_err().to_string(),
            "invalid containers = []: a task needs a container"
        );
        let one = json!([{"name": "web", "image": "nginx:1.27", "port": 80, "environment": {},
            "log_group": "/ecs/web", "log_stream_prefix": "web"}]);
        assert!(
            t(300, one)
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("invalid cpu = 300")
        );
    }

    #[test]
    fn a_service_is_replaced_for_its_name_cluster_or_launch_type() {
        let s: Service = sample(
            json!({"name": "web", "cluster": "c", "task_definition": "td:1",
            "desired_count": 1, "launch": "Fargate", "subnets": ["subnet-1"],
            "security_groups": ["sg-1"], "assign_public_ip": true,
            "steady_state_timeout_secs": null, "tags": {}}),
        );
        assert_eq!(forced(&s, "name", json!("api")), replaces("name"));
        assert_eq!(forced(&s, "cluster", json!("other")), replaces("cluster"));
        assert_eq!(forced(&s, "launch", json!("Ec2")), replaces("launch"));
        assert_eq!(
            forced(&s, "task_definition", json!("td:2")),
            ForceNew::none()
        );
        assert_eq!(forced(&s, "desired_count", json!(3)), ForceNew::none());
    }

    #[test]
    fn balancer_kinds_are_replaced_for_their_natural_keys_only() {
        let lb: LoadBalancer = sample(json!({"name": "alb", "subnets": ["subnet-1", "subnet-2"],
            "security_groups": ["sg-1"], "idle_timeout_secs": 60, "tags": {}}));
        assert_eq!(forced(&lb, "name", json!("alb2")), replaces("name"));
        assert_eq!(
            forced(&lb, "subnets", json!(["subnet-3"])),
            ForceNew::none()
        );
        assert_eq!(
            forced(&lb, "idle_timeout_secs", json!(120)),
            ForceNew::none()
        );
        let tg: TargetGroup = sample(json!({"name": "tg", "vpc_id": "vpc-1", "port": 80,
            "health_check": {"path": "/", "interval_secs": 30, "healthy_threshold": 5,
            "unhealthy_threshold": 2}, "deregistration_delay_secs": 30, "tags": {}}));
        assert_eq!(forced(&tg, "name", json!("tg2")), replaces("name"));
        assert_eq!(forced(&tg, "vpc_id", json!("vpc-2")), replaces("vpc_id"));
        assert_eq!(forced(&tg, "port", json!(8080)), replaces("port"));
        assert_eq!(
            forced(&tg, "deregistration_delay_secs", json!(5)),
            ForceNew::none()
        );
        let l: Listener = sample(json!({"load_balancer_arn": "arn:lb", "port": 80,
            "certificate_arn": null, "default_action": "not_found", "tags": {}}));
        assert_eq!(
            forced(&l, "load_balancer_arn", json!("arn:lb2")),
            replaces("load_balancer_arn")
        );
        assert_eq!(forced(&l, "port", json!(8080)), replaces("port"));
        assert_eq!(
            forced(&l, "default_action", json!({"redirect_to_https": 443})),
            ForceNew::none()
        );
        let r: ListenerRule = sample(json!({"listener_arn": "arn:l", "priority": 10,
            "path": "/api/*", "host": null, "target_group_arn": "arn:tg", "tags": {}}));
        assert_eq!(
            forced(&r, "listener_arn", json!("arn:l2")),
            replaces("listener_arn")
        );
        assert_eq!(forced(&r, "priority", json!(20)), replaces("priority"));
        assert_eq!(forced(&r, "path", json!("/v2/*")), ForceNew::none());
    }

    #[test]
    fn a_service_scaling_is_replaced_for_another_service_only() {
        let s: ServiceScaling = sample(json!({"cluster": "arn:aws:ecs:us-east-1:1:cluster/c",
            "service": "web", "min": 1, "max": 3, "target_cpu_percent": 60}));
        assert_eq!(forced(&s, "service", json!("api")), replaces("service"));
        assert_eq!(forced(&s, "cluster", json!("other")), replaces("cluster"));
        assert_eq!(forced(&s, "max", json!(5)), ForceNew::none());
        assert_eq!(
            forced(&s, "target_cpu_percent", json!(70)),
            ForceNew::none()
        );
    }
}
