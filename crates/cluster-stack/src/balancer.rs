//! The Application Load Balancer in front of the services: its config ([`LoadBalancerConfig`], each
//! service's [`Route`]) and what the cluster stack declares for it.

use std::collections::BTreeMap;

use platform_core::{Handle, Input, Scope, ValidationError};

use crate::ServiceConfig;
use crate::elb;
use crate::resources::{
    Listener, ListenerDefault, ListenerRule, LoadBalancer, TargetGroup, TargetHealthCheck,
};
use network_stack::{SecurityGroupId, SubnetId, VpcId};

/// An internet-facing Application Load Balancer over the public subnets, in the network's balancer
/// security group: HTTP on 80, and HTTPS on 443 with a certificate (80 then redirects to 443).
/// Each service with a [`Route`] gets a target group and a listener rule.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadBalancerConfig {
    /// Its name (default: the cluster's name and `-alb`, shortened to ELB's 32 characters).
    pub name: Option<String>,
    /// An ACM certificate ARN: HTTPS on 443 with it, and 80 redirecting there.
    pub certificate_arn: Option<String>,
    /// Seconds a connection may stay idle (default 60).
    pub idle_timeout_secs: u32,
    /// Seconds a task leaving a target group keeps its connections (default 30).
    pub deregistration_delay_secs: u32,
}

impl Default for LoadBalancerConfig {
    fn default() -> Self {
        Self {
            name: None,
            certificate_arn: None,
            idle_timeout_secs: 60,
            deregistration_delay_secs: 30,
        }
    }
}

impl LoadBalancerConfig {
    /// The ports its listeners take: 80, and 443 with a certificate.
    pub fn listener_ports(&self) -> Vec<u16> {
        if self.certificate_arn.is_some() {
            vec![80, 443]
        } else {
            vec![80]
        }
    }

    /// Its name for cluster `cluster_name`.
    pub fn name_for(&self, cluster_name: &str) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| elb::short_name(&format!("{cluster_name}-alb")))
    }

    /// The URL scheme users reach it by.
    fn scheme(&self) -> &'static str {
        if self.certificate_arn.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Which requests of the balancer go to a service, and how the balancer checks its tasks.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Route {
    /// A path pattern (`/api/*`).
    pub path: Option<String>,
    /// A host name (`api.example.com`).
    pub host: Option<String>,
    /// The target group's health check.
    pub health_check: TargetHealthCheck,
    /// Seconds ECS ignores a new task's failing health checks (default 60).
    pub health_check_grace_period_secs: u32,
}

impl Route {
    /// Requests whose path matches `pattern`.
    pub fn path(pattern: &str) -> Self {
        Self {
            path: Some(pattern.to_owned()),
            host: None,
            health_check: TargetHealthCheck::default(),
            health_check_grace_period_secs: 60,
        }
    }

    /// Requests for host `name`.
    pub fn host(name: &str) -> Self {
        Self {
            path: None,
            host: Some(name.to_owned()),
            ..Self::path("/")
        }
    }

    /// With the health check asking `path`.
    #[must_use]
    pub fn with_health_check_path(mut self, path: &str) -> Self {
        self.health_check.path = path.to_owned();
        self
    }

    /// Checks it, naming each field `FIELD.KEY`.
    ///
    /// # Errors
    /// The first problem, naming the field and the value.
    pub fn validate(&self, field: &str) -> Result<(), ValidationError> {
        if self.path.is_none() && self.host.is_none() {
            return Err(ValidationError::new(
                format!("{field}.path"),
                "none",
                "a service behind the balancer sets a path, a host or both",
            ));
        }
        self.health_check.validate(&format!("{field}."))?;
        if self.health_check_grace_period_secs > 2_147_483_647 {
            return Err(ValidationError::new(
                format!("{field}.health_check_grace_period_secs"),
                self.health_check_grace_period_secs,
                "is 0 to 2147483647",
            ));
        }
        Ok(())
    }

    /// The URL of the service behind balancer `dns_name`.
    pub(crate) fn url(&self, scheme: &str, dns_name: &str) -> String {
        let host = self.host.as_deref().unwrap_or(dns_name);
        let path = self.path.as_deref().unwrap_or("/").trim_end_matches('*');
        format!("{scheme}://{host}{path}")
    }
}

/// What the balancer's declaration gives the services and the outputs.
pub(crate) struct Declared {
    pub(crate) balancer: Handle<LoadBalancer>,
    pub(crate) scheme: &'static str,
    /// Per routed service (by short name): its rule.
    pub(crate) rules: BTreeMap<String, Handle<ListenerRule>>,
}

/// What the balancer is built on: the network's subnets, VPC and the balancer's security group.
pub(crate) struct Placement<'a> {
    pub(crate) vpc: &'a Input<VpcId>,
    pub(crate) subnets: &'a [Input<SubnetId>],
    pub(crate) security_group: &'a Input<SecurityGroupId>,
    pub(crate) cluster_name: &'a str,
    pub(crate) tags: &'a BTreeMap<String, String>,
}

/// Declares the balancer, its listeners, and each routed service's target group and rule.
pub(crate) fn declare(
    s: &mut Scope,
    config: &LoadBalancerConfig,
    at: &Placement<'_>,
    services: &[ServiceConfig],
) -> Declared {
    let balancer = s.add(
        "load-balancer",
        LoadBalancer {
            name: config.name_for(at.cluster_name),
            subnets: at.subnets.to_vec(),
            security_groups: vec![at.security_group.clone()],
            idle_timeout_secs: config.idle_timeout_secs,
            tags: at.tags.clone(),
        },
    );
    let listener = |s: &mut Scope, port: u16, certificate: Option<&String>, default| {
        s.add(
            format!("listener-{port}"),
            Listener {
                load_balancer_arn: Input::from(&balancer.arn),
                port,
                certificate_arn: certificate.cloned(),
                default_action: default,
                tags: at.tags.clone(),
            },
        )
    };
    let http_default = match config.certificate_arn {
        Some(_) => ListenerDefault::RedirectToHttps(443),
        None => ListenerDefault::NotFound,
    };
    let http = listener(s, 80, None, http_default);
    let rules_on = match &config.certificate_arn {
        Some(cert) => listener(s, 443, Some(cert), ListenerDefault::NotFound),
        None => http,
    };
    let mut rules = BTreeMap::new();
    for (i, svc) in services.iter().enumerate() {
        let Some(route) = &svc.route else { continue };
        let group = s.add(
            svc.key("target-group"),
            TargetGroup {
                name: elb::short_name(&format!("{}-{}", at.cluster_name, svc.name)),
                vpc_id: at.vpc.clone(),
                port: svc.container_port,
                health_check: route.health_check.clone(),
                deregistration_delay_secs: config.deregistration_delay_secs,
                tags: at.tags.clone(),
            },
        );
        let rule = s.add(
            svc.key("listener-rule"),
            ListenerRule {
                listener_arn: Input::from(&rules_on.arn),
                priority: u32::try_from(10 * (i + 1)).unwrap_or(u32::MAX),
                path: route.path.clone(),
                host: route.host.clone(),
                target_group_arn: Input::from(&group.arn),
                tags: at.tags.clone(),
            },
        );
        rules.insert(svc.name.clone(), rule);
    }
    Declared {
        balancer,
        scheme: config.scheme(),
        rules,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_has_a_url_under_the_balancer_or_its_host() {
        assert_eq!(
            Route::path("/api/*").url("http", "alb-1.elb.amazonaws.com"),
            "http://alb-1.elb.amazonaws.com/api/"
        );
        assert_eq!(
            Route::host("api.example.com").url("https", "alb-1"),
            "https://api.example.com/"
        );
        let mut neither = Route::host("api.example.com");
        neither.host = None;
        assert!(
            neither
                .validate("services[0]")
                .unwrap_err()
                .to_string()
                .starts_with("invalid services[0].path = none")
        );
        let mut r = Route::path("/");
        r.health_check.interval_secs = 1;
        assert_eq!(
            r.validate("services[1]").unwrap_err().field,
            "services[1].health_check_interval_secs"
        );
    }

    #[test]
    fn a_grace_period_is_what_ecs_takes() {
        let grace = |secs: u32| {
            let mut r = Route::host("api.example.com");
            r.health_check_grace_period_secs = secs;
            r.validate("services[0]")
        };
        for ok in [0, 60, 2_147_483_647] {
            assert!(grace(ok).is_ok(), "{ok}");
        }
        let e = grace(2_147_483_648).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.value.as_str()),
            ("services[0].health_check_grace_period_secs", "2147483648")
        );
    }

    #[test]
    fn https_adds_a_listener_port_and_a_default_name_fits_elb() {
        let mut c = LoadBalancerConfig::default();
        assert_eq!(c.listener_ports(), [80]);
        c.certificate_arn = Some("arn:aws:acm:us-east-1:1:certificate/x".into());
        assert_eq!(c.listener_ports(), [80, 443]);
        assert_eq!(c.name_for("my-ecs-cluster"), "my-ecs-cluster-alb");
        assert!(c.name_for(&"c".repeat(40)).len() <= 32);
    }
}
