// Package sizing decides how large a SandboxSet's warm pool should be. It is
// pure: numbers and times in, a size and its reason out, with no Kubernetes
// client, so every rule is table-tested on its own.
//
// The model. Each warm claim takes a sandbox from the pool and the operator
// at once starts its replacement, which is ready one refill time T later. A
// pool of S slots therefore serves a claim warm unless all S slots are
// refilling; a claim that finds none is served cold, from the template, and
// takes no slot. With claims arriving as a Poisson process at rate λ, that is
// Erlang's loss system. Its offered load is λT, by Little's law the mean
// number of slots refilling were no claim served cold, and the fraction of
// claims served cold is Erlang's B formula B(S, λT). WarmSize is the smallest S with 1 − B(S, λT) ≥ target.
// The formula depends on T only through its mean, so a moving mean of
// observed refill times is all it needs. The plain Poisson tail, the
// smallest S with P(N ≤ S−1) ≥ target for N ~ Poisson(λT), counts cold
// claims as taking slots too, and so oversizes: at λT = 100 and 99% it asks
// for 125 where 117 meet the target.
//
// Bursts are handled three times: Rate reads the busier of a short and a
// long window, and claims that start after a quiet spell over the time since
// they started, so a burst raises the rate within seconds; PeakClaims keeps
// the pool as large as the largest recent batch within one refill time,
// which a Poisson rate underrates; and Stabilizer holds
// the largest recent size for the scale-down delay, so the pool shrinks only
// after demand has stayed low. Recommend then applies the floors (minimum,
// schedules) and the ceiling.
package sizing
