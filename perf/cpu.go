package perf

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ClockTicks is the kernel's USER_HZ, the unit of utime and stime in /proc/PID/stat. It is 100
// on every Linux architecture Go supports (sysconf(_SC_CLK_TCK) needs cgo to ask).
const ClockTicks = 100

// ProcCPU returns the user and system CPU time a process has used so far, from /proc/PID/stat.
func ProcCPU(pid int) (user, sys time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseProcStat(string(b))
}

// parseProcStat reads utime and stime (fields 14 and 15) out of a /proc/PID/stat line. The
// command name (field 2) is in parentheses and may contain spaces, so fields are counted from
// the last ')'.
func parseProcStat(s string) (user, sys time.Duration, err error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14 → f[11], stime field 15 → f[12]
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("bad utime/stime in /proc stat")
	}
	tick := time.Second / ClockTicks
	return time.Duration(ut) * tick, time.Duration(st) * tick, nil
}

// SelfCPU returns this process's user and system CPU time (getrusage, microsecond resolution).
func SelfCPU() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// cpuSample is one reading of the client's and (optionally) the broker's CPU.
type cpuSample struct {
	clientUser, clientSys time.Duration
	brokerUser, brokerSys time.Duration
	brokerOK              bool
}

// sampleCPU reads the client's CPU and the sum over the broker processes pids (a cluster's
// brokers together); the broker figure is available only if every one of them could be read.
func sampleCPU(pids []int) cpuSample {
	var s cpuSample
	s.clientUser, s.clientSys = SelfCPU()
	if len(pids) == 0 {
		return s
	}
	s.brokerOK = true
	for _, pid := range pids {
		u, sy, err := ProcCPU(pid)
		if err != nil {
			s.brokerOK = false
			continue
		}
		s.brokerUser += u
		s.brokerSys += sy
	}
	return s
}

// CPUUsage is CPU time spent during the measured window.
type CPUUsage struct {
	UserS     float64 `json:"user_s"`
	SysS      float64 `json:"sys_s"`
	TotalS    float64 `json:"total_s"`
	UsPerMsg  float64 `json:"us_per_msg"`
	Available bool    `json:"available"`
}

// cpuUsage is u user and s system time spent on msgs messages.
func cpuUsage(u, s time.Duration, ok bool, msgs int64) CPUUsage {
	c := CPUUsage{UserS: round6(u.Seconds()), SysS: round6(s.Seconds()), TotalS: round6((u + s).Seconds()), Available: ok}
	if msgs > 0 && ok {
		c.UsPerMsg = round6(float64((u + s).Microseconds()) / float64(msgs))
	}
	return c
}

func cpuDelta(a, b cpuSample, msgs int64) (client, broker CPUUsage) {
	client = cpuUsage(b.clientUser-a.clientUser, b.clientSys-a.clientSys, true, msgs)
	broker = cpuUsage(b.brokerUser-a.brokerUser, b.brokerSys-a.brokerSys, a.brokerOK && b.brokerOK, msgs)
	return
}

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }
