package main

import (
	"os"
	"strconv"
	"strings"
)

// cpuSnap is CPU time in seconds, from /proc: the whole machine (busy and
// total, all CPUs), this process and the server under test. The difference
// of two snapshots says how much CPU the server spent per request and how
// much went to processes outside the benchmark (other work on a shared
// machine), which is what makes one run's figures comparable to another's.
type cpuSnap struct {
	ok                       bool
	busy, total, self, child float64
}

const clkTck = 100 // USER_HZ on Linux

func takeCPU(pid int) cpuSnap {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuSnap{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuSnap{}
	}
	var s cpuSnap
	for i := 1; i <= 8; i++ { // user nice system idle iowait irq softirq steal
		v, _ := strconv.ParseFloat(f[i], 64)
		s.total += v / clkTck
		if i != 4 && i != 5 {
			s.busy += v / clkTck
		}
	}
	var ok1, ok2 bool
	s.self, ok1 = procCPU(os.Getpid())
	s.child, ok2 = procCPU(pid)
	s.ok = ok1 && (pid == 0 || ok2)
	return s
}

// procCPU is utime+stime of pid in seconds (0, true for pid 0).
func procCPU(pid int) (float64, bool) {
	if pid == 0 {
		return 0, true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 { // state is f[0]; utime f[11], stime f[12]
		return 0, false
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clkTck, true
}

// cpuUse is what happened between two snapshots over a wall-clock window.
type cpuUse struct {
	OK         bool
	Server     float64 // CPU seconds of the server under test
	Generator  float64 // CPU seconds of the load generator (this process)
	Other      float64 // CPU seconds of every other process on the machine
	WallCores  float64 // total CPU seconds available (window × CPUs)
	ServerCPUs float64 // Server / window: cores the server kept busy
}

func cpuBetween(a, b cpuSnap, windowSecs float64) cpuUse {
	if !a.ok || !b.ok {
		return cpuUse{}
	}
	u := cpuUse{OK: true, Server: b.child - a.child, Generator: b.self - a.self, WallCores: b.total - a.total}
	u.Other = max(0, (b.busy-a.busy)-u.Server-u.Generator)
	if windowSecs > 0 {
		u.ServerCPUs = u.Server / windowSecs
	}
	return u
}
