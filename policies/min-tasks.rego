# Every ECS service runs at least two tasks, so that one failing task does not take it down.
# Mandatory: a `deny` rule. Try it: production --policy policies preview
package main

import rego.v1

deny contains violation if {
	some r in input.resources
	r.kind == "ecs:service"
	r.action != "delete"
	r.inputs.desired_count < 2
	violation := {
		"msg": sprintf("service %s runs %d task: one failing task takes it down", [r.inputs.name, r.inputs.desired_count]),
		"stack": r.stack,
		"resource": r.name,
		"fix": "cluster.desired_count = 2 (or more)",
	}
}
