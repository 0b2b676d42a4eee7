// Package controller owns the cluster controller's decisions: where the replicas of new
// partitions go (Placement), which brokers are alive (heartbeats and sessions), and who leads
// each partition (elections when a broker is fenced or shuts down, leaderless partitions
// whose in-sync replica is back, preferred leaders), and whether a leader's ISR change is
// granted. It runs on the Raft leader of the metadata.
//
// It is pure, like meta.Apply: no sockets, no clocks (the time is an argument), no goroutines,
// no randomness, no locks. Its input is the committed *meta.State and the time; its output is
// meta commands for its caller to propose. The only state it keeps is soft: the last heartbeat
// of each broker (and whether the connection it came on has closed since) and the time of the
// last preferred-leader pass. A node that becomes the Raft
// leader starts a new Controller and, since it heard no heartbeat before, gives every broker
// one session of grace from that moment before fencing it.
//
// The rules it keeps (the numbers in Config):
//
//   - A broker registers fenced (meta.RegisterBroker); the controller unfences it when it
//     heartbeats at its current broker epoch, and fences it when it has not for a session
//     (9 s by default). A heartbeat from an older broker epoch is ignored.
//   - A closed connection is a hint: when the connection a broker's last heartbeat came on
//     closes (Disconnected; the kernel closes a dead process's sockets at once), the broker
//     is fenced DisconnectGrace (1 s by default) later unless it heartbeats again meanwhile,
//     which a live broker that lost its connection does at once. A report of any other
//     connection (an older one, closed after the broker heartbeated on a new one) is ignored.
//     A connection to a broker's listener that was refused (ListenerRefused: a new
//     controller dials the brokers it has not heard from) is a hint of the same kind.
//   - Before a broker is fenced, its leaderships move to the first replica in replica order
//     that is in the ISR and alive, with the leader epoch and partition epoch bumped, and it
//     leaves every ISR it is in, except where it is the last alive member: that ISR stays as
//     it is and the partition is offline (leader meta.NoLeader) until a member returns, which
//     then leads — or, with the topic's unclean.leader.election.enable, the first live replica
//     leads at once, alone in its ISR, losing what only the old ISR held.
//   - Controlled shutdown moves the broker's leaderships and ISR places the same way, then
//     fences it once it leads nothing: the broker is done when it leads nothing.
//   - Leaderships go back to the preferred (first) replica when it is alive and in the ISR,
//     at most once per PreferredLeaderInterval (30 s by default).
//   - A partition's leader changes its ISR through the controller (AlterPartition, a function
//     of the state alone): at its leader epoch and current broker epoch, compare-and-set on
//     the partition epoch, the leader unchanged, members joining registered, unfenced, not
//     shutting down and at the broker epoch the leader names.
//
// It must not do I/O, read the clock or keep a reference to a State between calls, and it
// decides nothing the state machine must check: every command it returns is checked again by
// meta.Apply, which is what keeps the cluster's invariants whoever proposes.
//
// Lock order: none. The caller serialises the calls (the node's controller loop).
package controller
