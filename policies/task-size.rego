# Large Fargate tasks are worth a second look: advisory, a `warn` rule.
package main

import rego.v1

warn contains violation if {
	some r in input.resources
	r.kind == "ecs:task-definition"
	r.action in {"create", "update", "replace"}
	r.inputs.cpu >= 4096
	violation := {
		"msg": sprintf("task family %s asks for %d CPU units (%d MiB)", [r.inputs.family, r.inputs.cpu, r.inputs.memory]),
		"stack": r.stack,
		"resource": r.name,
		"fix": "check the service needs 4 vCPU or more; cluster.cpu = 1024 fits most web services",
	}
}
