package claim

import (
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Why nothing could be claimed (or released). Test for them with errors.Is:
// each calls for a different reaction from an agent.
var (
	// ErrNoSandboxSet: the pool does not exist; retrying will not help.
	ErrNoSandboxSet = errors.New("no such SandboxSet")
	// ErrPoolEmpty: the pool exists but had no available sandbox in time.
	ErrPoolEmpty = errors.New("no available sandbox")
	// ErrLostRaces: other agents took every sandbox a Claim tried, for
	// MaxAttempts tries; the pool is busy but not necessarily empty.
	ErrLostRaces = errors.New("lost every claim race")
	// ErrForbidden: RBAC refused a call; the error names the call and the
	// API server's message names the user.
	ErrForbidden = errors.New("forbidden")
	// ErrNotClaimed: Release and Renew refuse a Pod that is not a claimed
	// sandbox.
	ErrNotClaimed = errors.New("not a claimed sandbox")
	// ErrNotHolder: the sandbox is another identity's; only the identity
	// that claimed it may renew or release it.
	ErrNotHolder = errors.New("not the sandbox's holder")
	// ErrOperatorUnavailable: the operator's admission webhook did not
	// answer. Claims fail closed while it is down; retry once it is back.
	ErrOperatorUnavailable = errors.New("the SandboxSet operator is unavailable")
	// ErrHeldLimit: the identity already holds as many of the pool's
	// sandboxes as its spec.maxHeldPerIdentity allows; release one first.
	ErrHeldLimit = errors.New("held-limit reached")
)

// kindError carries a full message for people and one of the Err values
// above for code.
type kindError struct {
	kind error
	msg  string
	err  error // the API error behind it, if any
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }
func (e *kindError) Unwrap() error        { return e.err }

// agentRoleHint is where an agent gets the rights Claim and Release need.
const agentRoleHint = "an agent needs the Role in config/rbac/agent_role.yaml"

// apiError wraps an API error with the call that failed, turning an RBAC
// refusal into ErrForbidden with hint saying what grants the right.
func apiError(err error, verb, resource, namespace, hint string) error {
	if isRBACRefusal(err) {
		return &kindError{kind: ErrForbidden, err: err,
			msg: fmt.Sprintf("not allowed to %s %s in %s: %v; %s", verb, resource, where(namespace), err, hint)}
	}
	return fmt.Errorf("%s %s in %s: %w", verb, resource, where(namespace), err)
}

// where names a namespace, or all of them for the empty one.
func where(namespace string) string {
	if namespace == "" {
		return "all namespaces"
	}
	return "namespace " + namespace
}

// holderError is err as ErrNotHolder if it is the holder-only rule's
// refusal (config/policies/pool_pods.yaml), whose message names the holder.
func holderError(err error, name string) error {
	if apierrors.IsForbidden(err) && strings.Contains(err.Error(), "rule holder-only") {
		var status apierrors.APIStatus
		msg := err.Error()
		if errors.As(err, &status) {
			msg = status.Status().Message
		}
		if _, rule, ok := strings.Cut(msg, "rule holder-only: "); ok {
			msg = rule
		}
		return &kindError{kind: ErrNotHolder, err: err, msg: fmt.Sprintf("not allowed to act on sandbox %s: %s", name, msg)}
	}
	return nil
}

// unavailableError is err as ErrOperatorUnavailable if the API server could
// not call the operator's webhook, or nil.
func unavailableError(err error) error {
	if !strings.Contains(err.Error(), "failed calling webhook") {
		return nil
	}
	return &kindError{kind: ErrOperatorUnavailable, err: err, msg: "the SandboxSet operator's admission webhook did not answer, " +
		"and claims fail closed until it does; check the operator's Pods (kubectl -n sandboxset-system get pods) and retry. The API server said: " + err.Error()}
}

// heldLimitError is err as ErrHeldLimit if it is the held-limit rule's
// refusal (webhooks/held_limit.go), whose message names what is held.
func heldLimitError(err error) error {
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "rule held-limit: ") {
		return nil
	}
	_, rule, _ := strings.Cut(err.Error(), "rule held-limit: ")
	return &kindError{kind: ErrHeldLimit, err: err, msg: "cannot claim: " + rule}
}

// isRBACRefusal tells RBAC's Forbidden from admission's: the policies
// (config/policies) and the operator's webhooks refuse with Forbidden too,
// and their message, not a Role, says what to do.
func isRBACRefusal(err error) bool {
	return apierrors.IsForbidden(err) && !strings.Contains(err.Error(), "ValidatingAdmissionPolicy") &&
		!strings.Contains(err.Error(), "admission webhook")
}
