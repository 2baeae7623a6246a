//! The cluster stack's typed ARNs: a service is given its cluster's and its task definition's, and
//! neither compiles where the other is wanted.

platform_core::aws_id! {
    /// An ECS cluster's ARN (`arn:aws:ecs:us-east-1:123456789012:cluster/my-ecs-cluster`).
    pub ClusterArn
}

platform_core::aws_id! {
    /// An ECS task definition revision's ARN (`...:task-definition/frontend:3`).
    pub TaskDefinitionArn
}

platform_core::aws_id! {
    /// An ECS service's ARN (`...:service/my-ecs-cluster/frontend-service`).
    pub ServiceArn
}

platform_core::aws_id! {
    /// A CloudWatch Logs group's ARN, without the `:*` that `DescribeLogGroups` adds
    /// (`arn:aws:logs:us-east-1:123456789012:log-group:/ecs/frontend`): the one its tag calls take.
    pub LogGroupArn
}

platform_core::aws_id! {
    /// An Application Load Balancer's ARN (`...:loadbalancer/app/my-ecs-cluster-alb/50dc6c495c0c9188`).
    pub LoadBalancerArn
}

platform_core::aws_id! {
    /// A target group's ARN (`...:targetgroup/frontend/73e2d6bc24d8a067`).
    pub TargetGroupArn
}

platform_core::aws_id! {
    /// A listener's ARN (`...:listener/app/my-ecs-cluster-alb/50dc6c495c0c9188/f2f7dc8efc522ab2`).
    pub ListenerArn
}

platform_core::aws_id! {
    /// A listener rule's ARN (`...:listener-rule/app/.../9683b2d02a6cabee`).
    pub ListenerRuleArn
}
