// Package cluster is the harness for broker processes: the end-to-end tests
// (test/e2e), the fault tests of the cluster issues and the perf harness
// (perf/) start brokers through it. It owns three layers:
//
//   - Process (process.go): any child process, started with arguments and
//     environment, its stdout and stderr in one goroutine-safe buffer (and
//     optionally a file), stopped with SIGTERM and a timeout, killed with
//     SIGKILL, paused with SIGSTOP and resumed with SIGCONT, started again
//     with the same command; waits for a line of output (woken by each
//     write) or for any condition (Poll), each giving up early when the
//     process exits, and the exit status.
//   - Broker (broker.go): one `ringtail serve` process with a fixed address
//     (a free port picked once) and data directory, kept across restarts.
//     Ready means a TCP connection was accepted and ApiVersions answered on
//     it; Start returns only then, so an address is handed out only once it
//     accepts. Client and Admin give franz-go kgo/kadm clients.
//   - Cluster (cluster.go): N brokers started together (a Raft member cannot
//     become ready alone), each with its own addresses (ClusterConfig.Ports
//     reserves more per broker, e.g. for Raft) and data directory, common
//     and per-broker flags. Until the broker has cluster flags, a Cluster of
//     N is N independent single-node brokers.
//
// The broker binary is $RINGTAIL_BIN, or cmd/ringtail built once (Binary).
//
// The core returns errors and does not import package testing, so perf/
// can use it; the helpers in testing.go (StartBrokerT, StartClusterT,
// ClientT, AdminT) take a TB (*testing.T satisfies it), fail the test,
// print the end of the broker logs on failure and clean up when the test
// ends. Every wait is a condition with a deadline, never a fixed sleep.
//
// Network cuts (netns.go, root only): a Network puts each broker in its
// own network namespace, on its own address behind a bridge that the test
// process reaches too (ClusterConfig.Network), and cuts brokers off one
// another in both directions (Cut, Isolate, Heal) while the test still
// talks to every one of them. NewNetworkT skips a test where namespaces
// cannot be made. DistinctHosts gives each broker its own loopback address,
// which names brokers apart but cannot cut both directions (see netns.go).
package cluster
