# An example authorization policy for orchestrator (POLICY_FILE). It runs
# after the role check, so it only narrows what a key's role allows: allow
# unless a rule below denies, and say why in the 403.
#
# input:
#   principal: {key_id, name, tenant, role}
#   action:    the permission asked for, e.g. runs.start, runs.control
#   operation: what exactly, e.g. start, pause, resume, cancel, retry
#   tenant:    the tenant acted on
#   resource:  {workflow, version, run_id, task_type, input_size}
#   now:       the time of the request, RFC 3339 in UTC
package orchestrator

default allow := false

allow if count(deny) == 0

reason := concat("; ", sort(deny)) if count(deny) > 0

# Keys named ci* may start only workflows named ci-*.
deny contains msg if {
	input.action == "runs.start"
	startswith(input.principal.name, "ci")
	not startswith(input.resource.workflow, "ci-")
	msg := sprintf("key %s may start only workflows named ci-*, not %s", [input.principal.name, input.resource.workflow])
}

# Runs are cancelled only in the maintenance window, 22:00 to 06:00 UTC.
deny contains "runs are cancelled only in the maintenance window, 22:00-06:00 UTC" if {
	input.action == "runs.control"
	input.operation == "cancel"
	not in_maintenance_window
}

in_maintenance_window if hour >= 22

in_maintenance_window if hour < 6

hour := h if {
	[h, _, _] := time.clock(time.parse_rfc3339_ns(input.now))
}
