package v1alpha1

// Every agents.kruise.io label and annotation the operator reads or writes.
// Agents and the CLI import them from here; nothing else spells them out.
const (
	// LabelSandboxSet names the SandboxSet a Pod was created by. It stays on
	// a Pod after it is claimed, for traceability.
	LabelSandboxSet = "agents.kruise.io/sandboxset"

	// LabelState is the Pod's place in the pool: creating, available or claimed.
	LabelState = "agents.kruise.io/state"

	// LabelRevision is the revision (template hash) a Pod was created from.
	LabelRevision = "agents.kruise.io/revision"

	// LabelClaimedBy names the agent holding a Pod. Setting it on an
	// available Pod is the claim.
	LabelClaimedBy = "agents.kruise.io/claimed-by"

	// AnnotationClaimedAt is the RFC 3339 time a Pod was claimed.
	AnnotationClaimedAt = "agents.kruise.io/claimed-at"

	// AnnotationClaimedByUser is the Kubernetes identity (user name) that
	// made the claim, stamped by the claim webhook. From then on only that
	// identity, the operator and the cluster's own controllers may change
	// or delete the Pod. LabelClaimedBy is the agent id an agent chooses;
	// this is who the API server says it is.
	AnnotationClaimedByUser = "agents.kruise.io/claimed-by-user"

	// AnnotationShutdownTime is when the operator deletes a claimed Pod, an
	// RFC 3339 UTC time. The holder sets it in the claim or later, and may
	// move it (renew) up to AnnotationMaxShutdownTime. A claim of a pool with
	// spec.claimLifetime.default gets it stamped when it sets none.
	AnnotationShutdownTime = "agents.kruise.io/shutdown-time"

	// AnnotationMaxShutdownTime is the latest shutdown time a claimed Pod may
	// have: its claim time plus its pool's spec.claimLifetime.max at the
	// claim, stamped by the claim webhook. The pool's later changes, or its
	// deletion, do not move it.
	AnnotationMaxShutdownTime = "agents.kruise.io/max-shutdown-time"

	// AnnotationPersistentContents lists, comma-separated, what the sandbox
	// runtime keeps across hibernation and wake-up.
	AnnotationPersistentContents = "agents.kruise.io/persistent-contents"

	// AnnotationLedgerPending holds, on a claim ledger, the claims the
	// webhook has admitted but the manager's cache may not show yet: a JSON
	// object of Pod name to its admission time and whether it is cold. A claim ledger is a
	// Lease the claim webhook keeps per pool and identity (its
	// spec.holderIdentity) when the pool has spec.maxHeldPerIdentity.
	AnnotationLedgerPending = "agents.kruise.io/pending-claims"

	// KeyPrefix is the prefix the operator owns; templates may not use it.
	KeyPrefix = "agents.kruise.io/"
)

// SandboxState is the value of LabelState.
type SandboxState string

const (
	// StateCreating: the Pod exists but is not Ready; it cannot be claimed.
	StateCreating SandboxState = "creating"
	// StateAvailable: the Pod is Ready and can be claimed at any time.
	StateAvailable SandboxState = "available"
	// StateClaimed: an agent holds the Pod; it has left the pool.
	StateClaimed SandboxState = "claimed"
)
