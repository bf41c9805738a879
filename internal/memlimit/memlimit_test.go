package memlimit

import (
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
)

const (
	gib = int64(1) << 30
	mib = int64(1) << 20
)

// meminfo16G is a /proc/meminfo of a 16 GiB machine.
const meminfo16G = "MemTotal:       16777216 kB\nMemFree:         4070360 kB\n"

// fakeRoot writes files (path relative to the root: contents) under a
// temporary directory standing for the file system root.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for p, body := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestDecide(t *testing.T) {
	auto := Setting{Auto: true}
	v2 := func(max string) map[string]string {
		return map[string]string{
			"proc/self/cgroup": "0::/system.slice/navarch-controlplane.service\n",
			"sys/fs/cgroup/system.slice/navarch-controlplane.service/memory.max": max + "\n",
			"proc/meminfo": meminfo16G,
		}
	}
	tests := []struct {
		name      string
		setting   Setting
		files     map[string]string
		vars      map[string]string
		want      Limit
		wantBasis string
	}{
		{
			name: "env-wins", setting: Setting{Bytes: 4 * gib}, files: v2("1073741824"),
			vars: map[string]string{"GOMEMLIMIT": "3GiB"},
			want: Limit{Bytes: 3 * gib, Source: FromEnv},
		},
		{
			name: "env-off", setting: auto, files: v2("1073741824"),
			vars: map[string]string{"GOMEMLIMIT": "off"},
			want: Limit{Source: FromEnv},
		},
		{
			name: "cgroup-v2", setting: auto, files: v2("4294967296"),
			want: Limit{Bytes: 4 * gib / 100 * 90, Source: FromCgroup}, wantBasis: "90% of the cgroup v2 limit 4GiB",
		},
		{
			name: "cgroup-v2-max", setting: auto, files: v2("max"),
			want: Limit{Bytes: 16 * gib / 100 * 80, Source: FromMachine}, wantBasis: "80% of MemTotal 16GiB",
		},
		{
			name: "cgroup-v2-parent-smaller", setting: auto,
			files: map[string]string{
				"proc/self/cgroup": "0::/navarch.slice/cp.service\n",
				"sys/fs/cgroup/navarch.slice/cp.service/memory.max": "max\n",
				"sys/fs/cgroup/navarch.slice/memory.max":            "2147483648\n",
				"proc/meminfo":                                      meminfo16G,
			},
			want: Limit{Bytes: 2 * gib / 100 * 90, Source: FromCgroup},
		},
		{
			name: "cgroup-v2-namespaced", setting: auto,
			files: map[string]string{
				"proc/self/cgroup":         "0::/\n",
				"sys/fs/cgroup/memory.max": "1073741824\n",
				"proc/meminfo":             meminfo16G,
			},
			want: Limit{Bytes: gib / 100 * 90, Source: FromCgroup},
		},
		{
			name: "cgroup-v1", setting: auto,
			files: map[string]string{
				"proc/self/cgroup": "5:devices:/docker/abc\n4:memory:/docker/abc\n0::/\n",
				"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": "3221225472\n",
				"proc/meminfo": meminfo16G,
			},
			want: Limit{Bytes: 3 * gib / 100 * 90, Source: FromCgroup}, wantBasis: "90% of the cgroup v1 limit 3GiB",
		},
		{
			name: "cgroup-v1-host-path-absent", setting: auto,
			files: map[string]string{
				"proc/self/cgroup":                           "4:cpuacct,memory:/docker/abc\n",
				"sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n",
				"proc/meminfo":                               meminfo16G,
			},
			want: Limit{Bytes: gib / 100 * 90, Source: FromCgroup},
		},
		{
			name: "cgroup-v1-unlimited", setting: auto,
			files: map[string]string{
				"proc/self/cgroup": "4:memory:/process_api/x\n0::/\n",
				"sys/fs/cgroup/memory/process_api/x/memory.limit_in_bytes": "9223372036854771712\n",
				"sys/fs/cgroup/memory/memory.limit_in_bytes":               "9223372036854771712\n",
				"proc/meminfo": meminfo16G,
			},
			want: Limit{Bytes: 16 * gib / 100 * 80, Source: FromMachine},
		},
		{
			name: "cgroup-above-machine", setting: auto, files: v2("34359738368"),
			want: Limit{Bytes: 16 * gib / 100 * 80, Source: FromMachine},
		},
		{
			name: "no-cgroup", setting: auto,
			files: map[string]string{"proc/meminfo": meminfo16G},
			want:  Limit{Bytes: 16 * gib / 100 * 80, Source: FromMachine},
		},
		{
			name: "cgroup-without-meminfo", setting: auto,
			files: map[string]string{
				"proc/self/cgroup":         "0::/\n",
				"sys/fs/cgroup/memory.max": "1073741824\n",
			},
			want: Limit{Bytes: gib / 100 * 90, Source: FromCgroup},
		},
		{
			name: "nothing-found", setting: auto, files: map[string]string{"proc/meminfo": "MemFree: 1 kB\n"},
			want: Limit{Source: FromNothing}, wantBasis: "no MemTotal",
		},
		{
			name: "config-size", setting: Setting{Bytes: 2 * gib}, files: v2("1073741824"),
			want: Limit{Bytes: 2 * gib, Source: FromConfig},
		},
		{
			name: "config-off", setting: Setting{}, files: v2("1073741824"),
			want: Limit{Source: FromOff},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Decide(tt.setting, System{Root: fakeRoot(t, tt.files), Getenv: env(tt.vars)})
			if got.Bytes != tt.want.Bytes || got.Source != tt.want.Source {
				t.Fatalf("Decide = %d (%s) from %s, want %d (%s) from %s",
					got.Bytes, got, got.Source, tt.want.Bytes, tt.want, tt.want.Source)
			}
			if !strings.Contains(got.Basis, tt.wantBasis) {
				t.Fatalf("basis %q does not say %q", got.Basis, tt.wantBasis)
			}
		})
	}
}

func TestParseSetting(t *testing.T) {
	tests := []struct {
		in      string
		want    Setting
		wantErr string
	}{
		{"auto", Setting{Auto: true}, ""},
		{"", Setting{Auto: true}, ""},
		{"off", Setting{}, ""},
		{"0", Setting{}, ""},
		{"2GiB", Setting{Bytes: 2 * gib}, ""},
		{"1536MiB", Setting{Bytes: 1536 * mib}, ""},
		{"1TiB", Setting{Bytes: 1 << 40}, ""},
		{"2147483648", Setting{Bytes: 2 * gib}, ""},
		{"2147483648B", Setting{Bytes: 2 * gib}, ""},
		{"2GB", Setting{}, `"2GB" is not a size`},
		{"1.5GiB", Setting{}, `"1.5GiB" is not a size`},
		{"-1GiB", Setting{}, `"-1GiB" is not a size`},
		{"lots", Setting{}, `"lots" is not a size`},
		{"99999999TiB", Setting{}, `"99999999TiB" is not a size`},
		{"1MiB", Setting{}, "below the minimum of 64MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSetting(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSetting(%q) = %v, %v; want an error saying %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSetting(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormatSize(t *testing.T) {
	tests := []struct {
		in   int64
		want string
	}{
		{2 * gib, "2GiB"},
		{1536 * mib, "1536MiB"},
		{gib / 100 * 90, "921MiB"},
		{512, "512B"},
		{3 << 10, "3KiB"},
		{24684092 << 10, "24105MiB"},
		{0, "0B"},
	}
	for _, tt := range tests {
		if got := FormatSize(tt.in); got != tt.want {
			t.Errorf("FormatSize(%d) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestSet: the runtime's limit is the one decided, and GOMEMLIMIT's is
// left alone and reported.
func TestSet(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	sys := System{Root: t.TempDir(), Getenv: env(nil)}

	if l := Set(Setting{Bytes: 3 * gib}, sys); l.Bytes != 3*gib || debug.SetMemoryLimit(-1) != 3*gib {
		t.Fatalf("config 3GiB: decided %d, runtime has %d", l.Bytes, debug.SetMemoryLimit(-1))
	}
	if l := Set(Setting{}, sys); l.Bytes != 0 || debug.SetMemoryLimit(-1) != math.MaxInt64 {
		t.Fatalf("off: decided %d, runtime has %d", l.Bytes, debug.SetMemoryLimit(-1))
	}
	debug.SetMemoryLimit(5 * gib) // as the runtime does for GOMEMLIMIT=5GiB
	sys.Getenv = env(map[string]string{"GOMEMLIMIT": "5GiB"})
	if l := Set(Setting{Bytes: 3 * gib}, sys); l.Source != FromEnv || l.Bytes != 5*gib || debug.SetMemoryLimit(-1) != 5*gib {
		t.Fatalf("GOMEMLIMIT: decided %d from %s, runtime has %d", l.Bytes, l.Source, debug.SetMemoryLimit(-1))
	}
}
