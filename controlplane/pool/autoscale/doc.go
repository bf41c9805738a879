// Package autoscale decides the size a node pool is kept at, from its GPU
// utilisation, from windows of time and from the Slurm jobs waiting for
// its partition. Decide is pure: the pool reconciler gathers its Inputs
// once a pass (the samples from a Window it keeps per pool, the queue from
// SlurmQueue, which is the package's only I/O), applies the Decision, and
// records its Reason in the audit log.
//
// Decide's rules, each optional but the bounds:
//
//   - Bounds. The size is never below the pool's min nor above its max
//     (the min wins over a max below it). A wanted size outside them is
//     brought back within them, and the utilisation rule waits for the
//     next pass to count its step from there.
//   - Schedules. Each firing of a schedule's cron line, read in its time
//     zone, opens a window that lasts its Duration. While a window is
//     open, its Size (within min and max) is a floor; of several open,
//     the largest wins.
//   - Queue. While jobs wait in the pool's Slurm partition for nodes (as
//     SlurmQueue counts them: waiting for resources or priority, not held
//     or waiting for a time, a job or a limit), the pool wants its live
//     nodes plus the nodes those jobs ask for. The queue only grows the
//     pool: while jobs wait, or the queue could not be read, nothing
//     shrinks it, and once they run it is left to the utilisation rule
//     to shrink.
//   - Utilisation. The mean of the samples over the rule's Window, each
//     sample holding until the next, grows the pool by Step when above
//     ScaleUpAbove and shrinks it by Step when below ScaleDownBelow. The
//     rule acts only Cooldown after the wanted size last changed, and
//     only on samples that cover its whole window: after a restart it
//     waits a window before it decides anything.
//   - Together. The largest of the rules' sizes wins a scale-up (on a tie:
//     schedule, queue, utilisation). The pool shrinks only when no rule
//     wants it larger, and never below a floor: its min, or an open
//     window's size.
//   - A window's end. Without a utilisation rule, which is what
//     otherwise shrinks a pool, a window that ended since the wanted size
//     last changed brings the pool back to its floor.
//
// A Decision that changes nothing has Wanted equal to Inputs.Wanted and
// no Reason; one that changes the size says why in a sentence an operator
// reads: "mean GPU utilisation 91% over 5m0s is above 80%: 3 → 4".
package autoscale
