package simnvml

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes a job process end with the agent, however the agent
// ends.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
