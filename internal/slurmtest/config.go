package slurmtest

import (
	"fmt"
	"path/filepath"
	"strings"
)

// config is what one cluster's slurm.conf varies by.
type config struct {
	dir           string
	node          string
	user          string
	slurmctldPort int
	slurmdPort    int
}

// String is the slurm.conf: the least a controller and one node on
// loopback need, with every file in the cluster's folder, no cgroups and
// no accounting, and timings short enough for a test.
func (c config) String() string {
	path := func(name string) string { return filepath.Join(c.dir, name) }
	lines := []string{
		"ClusterName=navarchtest",
		fmt.Sprintf("SlurmctldHost=%s(127.0.0.1)", c.node),
		fmt.Sprintf("SlurmctldPort=%d", c.slurmctldPort),
		fmt.Sprintf("SlurmdPort=%d", c.slurmdPort),
		"AuthType=auth/munge",
		"AuthInfo=socket=" + path("munge.socket"),
		"CredType=cred/munge",
		"SlurmUser=" + c.user,
		"SlurmdUser=" + c.user,
		"StateSaveLocation=" + path("state"),
		"SlurmdSpoolDir=" + path("spool"),
		"SlurmctldPidFile=" + path("slurmctld.pid"),
		"SlurmdPidFile=" + path("slurmd.pid"),
		"SlurmctldLogFile=" + path("slurmctld.log"),
		"SlurmdLogFile=" + path("slurmd.log"),
		"SlurmctldDebug=info",
		"SlurmdDebug=info",
		// No cgroups: jobs are tracked by their process tree, and nothing
		// confines or measures them. (proctrack/pgid would do too, but
		// takes 3 s to see a cancelled job's processes gone.)
		"ProctrackType=proctrack/linuxproc",
		"TaskPlugin=task/none",
		"JobAcctGatherType=jobacct_gather/none",
		"AccountingStorageType=accounting_storage/none",
		"JobCompType=jobcomp/none",
		"MpiDefault=none",
		"MailProg=/bin/true",
		// The test's own limits would otherwise be pushed onto its jobs.
		"PropagateResourceLimits=NONE",
		"SelectType=select/cons_tres",
		"SelectTypeParameters=CR_CPU",
		// The node has the CPUs slurm.conf gives it whatever this machine
		// has, so each job takes one of four on any machine.
		"SlurmdParameters=config_overrides",
		"ReturnToService=2",
		// A job that cannot start at once waits for the main scheduling
		// loop, every 60 s unless told otherwise; a resumed node cannot
		// take jobs until it registers again.
		"SchedulerParameters=sched_interval=1",
		// A cancelled job gets SIGKILL 2 s after SIGTERM, not 30.
		"KillWait=2",
		"SlurmdTimeout=30",
		"MessageTimeout=10",
		"InactiveLimit=0",
		"MinJobAge=300",
		fmt.Sprintf("NodeName=%s NodeAddr=127.0.0.1 CPUs=4 RealMemory=100 State=UNKNOWN", c.node),
		fmt.Sprintf("PartitionName=%s Nodes=%s Default=YES MaxTime=INFINITE State=UP", Partition, c.node),
	}
	return strings.Join(lines, "\n") + "\n"
}
