package engine

// Caller is who causes the events of a call, as each of them records it:
// Actor in the event's actor, OnBehalf beside it, and the policy decision
// that allowed the call in the data of the first event the call causes.
// The zero Caller is the engine itself.
type Caller struct {
	// Actor is the principal that made the call: an API key
	// (key:<id>:<name>, Principal.Actor), a built-in principal ("local",
	// "cli:USER"), or "" for the engine (ActorEngine).
	Actor string
	// OnBehalf is whom the actor acts for: the X-Actor an operator's key
	// names, or the worker id an external worker reports as. "" for none.
	OnBehalf string
	// Policy is the decision of the policy that allowed the call; nil when
	// no policy is in force.
	Policy *PolicyDecision
}

// By is the Caller of a principal acting for nobody else.
func By(actor string) Caller { return Caller{Actor: actor} }

// actor is what events record as the actor: ActorEngine when none is named.
func (c *Caller) actor() string {
	if c.Actor == "" {
		return ActorEngine
	}
	return c.Actor
}

// PolicyDecision is the answer of the authorization policy to one call, as
// the first event the call causes records it: which policy (the SHA-256 of
// its files) decided, what it said and why, and the decision's id, which the
// server's log names too.
type PolicyDecision struct {
	ID         string `json:"decision_id"`
	Allow      bool   `json:"allow"`
	Reason     string `json:"reason,omitempty"`
	PolicyHash string `json:"policy_hash"`
}
