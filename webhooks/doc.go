// Package webhooks holds the operator's admission webhooks: defaulting and
// validation of SandboxSets, and the Pod webhook that stamps pool Pods on
// creation and turns an agent's claim label into one atomic, validated write.
//
// Each webhook is a thin typed handler over pure decision functions, so the
// rules are table-tested on their own and exercised end to end through a
// real API server's admission chain.
package webhooks
