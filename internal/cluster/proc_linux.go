package cluster

import "syscall"

// sysProcAttr puts a child in a process group of its own, so a terminal's
// Ctrl-C reaches only the cluster, which stops the roles before the NATS
// nodes; and kills it when the cluster dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
