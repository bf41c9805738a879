package cli

import (
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/navarch/navarch/internal/display"
)

// command is one subcommand as the usage shows it.
type command struct {
	// name is what follows "navarch": "drain", "get nodes".
	name string
	// synopsis is its arguments and flags, as they are defined in the code.
	synopsis string
	// summary says what it does, in a few words.
	summary string
	// flags describes the flags of a command whose flag set is defined
	// outside this package (the demo); every other command's flag list is
	// generated from its flag set.
	flags string
}

// commands lists every subcommand, in the order the usage shows them.
var commands = []command{
	{name: "get nodes", summary: "list nodes",
		synopsis: "[-o table|json] [--lifecycle STATE]... [--health HEALTH]... [--reachability REACH]... [-l KEY=VALUE]... [--text TEXT] [--held-back]"},
	{name: "get node", summary: "show one node in detail: its GPUs, events and commands",
		synopsis: "ID [-o table|json] [--events N]"},
	{name: "get events", summary: "list health events, newest first",
		synopsis: "[-o table|json] [--node ID] [--min-health HEALTH] [--limit N] [--text TEXT]"},
	{name: "get status", summary: "fleet totals, the auto-cordon breaker, the providers and, on etcd, the control planes",
		synopsis: "[-o table|json]"},
	{name: "get audit", summary: "who changed what, and how it ended, newest first; needs an operator token",
		synopsis: "[-o table|json] [--node ID] [--limit N]"},
	{name: "get pools", summary: "list the pools: size, wanted, bounds, health, autoscaling and latest decision",
		synopsis: "[-o table|json]"},
	{name: "get pool", summary: "show one pool: its spec, its nodes' state and its latest decisions",
		synopsis: "POOL [-o table|json]"},
	{name: "cordon", summary: "stop new work landing on a node",
		synopsis: "ID [--reason TEXT]"},
	{name: "uncordon", summary: "return a node to service",
		synopsis: "ID [--reason TEXT]"},
	{name: "release", summary: "keep in service nodes the auto-cordon breaker held back, and clear their mark",
		synopsis: "ID... [--reason TEXT]"},
	{name: "drain", summary: "drain a node: no new work; DRAINED once its GPU work ends or the deadline passes",
		synopsis: "ID [--reason TEXT] [--deadline DURATION] [--force]"},
	{name: "terminate", summary: "drain a node (unless --force), then stop it",
		synopsis: "ID [--reason TEXT] [--force] [--drain-timeout DURATION]"},
	{name: "diagnose", summary: "run an NVML self-check on a node and print its report",
		synopsis: "ID [--wait DURATION]"},
	{name: "reset-gpu", summary: "reset one GPU through the node's agent; refused while processes use it, unless --force",
		synopsis: "ID --gpu N [--reason TEXT] [--force] [--wait DURATION]"},
	{name: "reboot", summary: "reboot a drained node (any with --force); done when it registers from a new boot",
		synopsis: "ID [--reason TEXT] [--force] [--wait DURATION]"},
	{name: "reset-identity", summary: "forget a node's agent key, so a machine with a join token may join as it",
		synopsis: "ID"},
	{name: "power-cycle", summary: "switch a silent node's machine off and on through its provider; --force unless its agent is OFFLINE or never came up",
		synopsis: "ID [--reason TEXT] [--force]"},
	{name: "provision", summary: "start new nodes through a provider",
		synopsis: "--count N [--provider NAME] [--gpus N] [--instance-type TYPE] [-l KEY=VALUE]... [--sim-fault SPEC]... [--chaos DURATION] [-o table|json]"},
	{name: "pool scale", summary: "set the number of nodes a pool is kept at, within its min and max",
		synopsis: "POOL --to N [--reason TEXT]"},
	{name: "pool put", summary: "create a pool, or replace the spec of one the API created; needs an admin token",
		synopsis: "POOL -f FILE"},
	{name: "pool delete", summary: "forget a pool the API created; its nodes stay; needs an admin token",
		synopsis: "POOL"},
	{name: "token create", summary: "create an operator or agent token and print it, once; needs an admin token",
		synopsis: "NAME --role viewer|operator|admin|agent [--ttl DURATION] [--uses N]"},
	{name: "token list", summary: "list the tokens, never their secrets; needs an admin token",
		synopsis: "[-o table|json]"},
	{name: "token revoke", summary: "revoke a token at once; needs an admin token",
		synopsis: "NAME"},
	{name: "config view", summary: "print the client configuration, its tokens redacted",
		synopsis: "[-o yaml|json]"},
	{name: "config get-contexts", summary: "list the contexts; * marks the current one"},
	{name: "config use-context", summary: "make a context the current one",
		synopsis: "NAME"},
	{name: "config set-context", summary: "create or update a context; the first one becomes the current one",
		synopsis: "NAME [--server HOST:PORT] [--ca-cert FILE] [--token TOKEN | --token-file FILE]"},
	{name: "config delete-context", summary: "delete a context",
		synopsis: "NAME"},
	{name: "demo", summary: "run a simulated fleet on this machine and open the console on it",
		synopsis: "[--nodes N] [--gpus N] [--keep] [--data-dir DIR] [--bin DIR] [--fault-every DURATION] [--log-level LEVEL] [--log-format FORMAT]",
		flags:    demoFlags},
	{name: "version", summary: "print the version"},
	{name: "completion", summary: "print a shell completion script: source <(navarch completion bash)",
		synopsis: "bash|zsh|fish"},
	{name: "help", summary: "print this usage, or one command's",
		synopsis: "[COMMAND]"},
}

// demoFlags describes the flags internal/demo.ParseArgs defines.
const demoFlags = `  --nodes N               simulated nodes, 1–1000; above 24 they run inside
                          this process (default 12)
  --gpus N                GPUs per node, 1–64 (default 8)
  --keep                  resume the fleet stored by the last run instead of
                          starting clean; no agents are started for it
  --data-dir DIR          where the store, config and logs go (default .demo)
  --bin DIR               where navarch-controlplane and navarch-agent are
                          (default: this binary's directory)
  --fault-every DURATION  mean time between faults across the fleet; 0 turns
                          them off (default 5s)
  --log-level LEVEL       level of the control plane's log (controlplane.log
                          in the data directory): debug, info, warn or
                          error (default info)
  --log-format FORMAT     format of that log: text or json (default text)
`

const usageFooter = `--server HOST:PORT picks the control plane for the console and for every
command but config, demo and version; it may come before the command or
among its flags, like the other connection flags. Several control planes,
a leader and its standbys, are joined by commas (--server a:50051,b:50051):
calls go to whichever leads. Without it:
$NAVARCH_SERVER, else the context's server, else 127.0.0.1:50051. The
connection is TLS, trusting --ca-cert FILE (the control plane's
DATA_DIR/pki/ca.crt), else $NAVARCH_CA_CERT, else the context's CA, else the
CA of a control plane with the default data directory on this machine;
--insecure speaks plaintext to a control plane started with --insecure.
Every call bears the operator token --token TOKEN, else $NAVARCH_TOKEN, else
the context's, else, for a control plane on loopback, the admin token of a
control plane with the default data directory on this machine, where this
user can read it. The context is --context NAME, else the current context of
the client configuration, $XDG_CONFIG_HOME/navarch/config.yaml or
~/.config/navarch/config.yaml, which the config commands manage. A viewer
token reads, an operator token also changes the fleet, an admin token also
manages tokens; an agent token only lets agents join (navarch-agent
--join-token). --read-only is also accepted before 'get', which never
changes anything.

'navarch COMMAND -h' (or 'navarch help COMMAND') describes a command's flags.
Exit codes: 0 ok, 1 failure, 2 bad usage, 3 node, pool, token or context
not found, 4 refused, 5 not authenticated or not permitted.
`

// width is the width the usage is laid out for.
const width = 80

// topUsage is the usage 'navarch help' prints.
func topUsage() string {
	var b strings.Builder
	b.WriteString("Usage:\n")
	const conn = "[--context NAME] [--server HOST:PORT] [--ca-cert FILE | --insecure] [--token TOKEN]"
	b.WriteString(wrap("  navarch", conn+" [--read-only]"))
	b.WriteString("      open the fleet console; --read-only, or a viewer token, hides and refuses\n")
	b.WriteString("      every action\n")
	b.WriteString(wrap("  navarch", conn+" COMMAND [ARGUMENTS] [FLAGS]"))
	b.WriteString("\nCommands:\n")
	for _, c := range commands {
		writeEntry(&b, "  navarch ", c)
	}
	b.WriteString("\n" + usageFooter)
	return b.String()
}

// groupUsage is the usage of a group of commands, 'navarch get -h' or
// 'navarch token -h': every command whose name starts with group. word
// names what follows the group: KIND, ACTION.
func groupUsage(group, word string) string {
	var b strings.Builder
	b.WriteString("Usage:\n")
	for _, c := range commands {
		if strings.HasPrefix(c.name, group+" ") {
			writeEntry(&b, "  navarch ", c)
		}
	}
	b.WriteString("\n'navarch " + group + " " + word + " -h' describes its flags.\n")
	return b.String()
}

func writeEntry(b *strings.Builder, prefix string, c command) {
	b.WriteString(wrap(prefix+c.name, c.synopsis))
	b.WriteString("      " + c.summary + "\n")
}

// lookup finds a command by name.
func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// commandUsage is the usage 'navarch NAME -h' prints; fs is the command's
// flag set, or nil where the command describes its flags itself.
func commandUsage(name string, fs *flag.FlagSet) string {
	c, ok := lookup(name)
	if !ok {
		// Every command that parses flags is listed; this is a bug.
		panic(fmt.Sprintf("cli: no usage for %q", name))
	}
	var b strings.Builder
	b.WriteString(wrap("Usage: navarch "+c.name, c.synopsis))
	b.WriteString("\n" + strings.ToUpper(c.summary[:1]) + c.summary[1:] + ".\n")
	flags := c.flags
	if fs != nil {
		flags = flagTable(fs)
	}
	if flags != "" {
		b.WriteString("\nFlags:\n" + flags)
	}
	return b.String()
}

// wrap lays out head and the words of synopsis in lines of at most width
// columns, continuation lines indented under the first word after head. A
// bracketed group is never broken.
func wrap(head, synopsis string) string {
	indent := strings.Repeat(" ", utf8.RuneCountInString(head)+1)
	line, n := head, 0
	var b strings.Builder
	for _, w := range words(synopsis) {
		if n > 0 && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) > width {
			b.WriteString(line + "\n")
			line, n = indent+w, 1
			continue
		}
		line += " " + w
		n++
	}
	b.WriteString(line + "\n")
	return b.String()
}

// words splits s at the spaces outside brackets.
func words(s string) []string {
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '[':
			depth++
		case ']':
			depth--
		case ' ':
			if depth == 0 {
				if i > start {
					out = append(out, s[start:i])
				}
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

// connFlag reports whether a flag says how to reach the control plane.
func connFlag(name string) bool {
	return name == "server" || name == "ca-cert" || name == "insecure" || name == "token" || name == "context"
}

// flagTable lists the flags of fs, aliases (flags sharing one value, such as
// -o and --output) on one line, the connection flags last.
func flagTable(fs *flag.FlagSet) string {
	type group struct {
		names []string
		f     *flag.Flag
	}
	var groups []*group
	byValue := map[flag.Value]*group{}
	fs.VisitAll(func(f *flag.Flag) {
		if g, ok := byValue[f.Value]; ok {
			g.names = append(g.names, f.Name)
			return
		}
		g := &group{names: []string{f.Name}, f: f}
		byValue[f.Value] = g
		groups = append(groups, g)
	})
	// The connection flags, where a command takes them, come last. The
	// config commands take none, and list their own --server, --ca-cert
	// and --token as they define them.
	if fs.Lookup("insecure") != nil {
		sort.SliceStable(groups, func(i, j int) bool {
			return !connFlag(groups[i].f.Name) && connFlag(groups[j].f.Name)
		})
	}
	type row struct{ left, text string }
	var rows []row
	col := 0
	for _, g := range groups {
		sort.Slice(g.names, func(i, j int) bool { return len(g.names[i]) < len(g.names[j]) })
		names := make([]string, len(g.names))
		for i, n := range g.names {
			names[i] = dashed(n)
		}
		arg, text := placeholder(g.f)
		left := strings.Join(names, ", ")
		if arg != "" {
			left += " " + arg
		}
		if d := defaultText(g.f); d != "" {
			text += " (default " + d + ")"
		}
		rows = append(rows, row{left, text})
		col = max(col, utf8.RuneCountInString(left))
	}
	var b strings.Builder
	indent := strings.Repeat(" ", 2+col+2)
	for _, r := range rows {
		line := "  " + r.left + strings.Repeat(" ", col-utf8.RuneCountInString(r.left)+2)
		first := true
		for _, w := range strings.Fields(r.text) {
			if !first && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(w) > width {
				b.WriteString(line + "\n")
				line = indent + w
				continue
			}
			if first {
				line += w
				first = false
			} else {
				line += " " + w
			}
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// placeholder splits a flag's usage into the name of its value, given in
// backquotes at the start ("`TEXT` why"), and the description.
func placeholder(f *flag.Flag) (arg, text string) {
	if rest, ok := strings.CutPrefix(f.Usage, "`"); ok {
		if name, text, ok := strings.Cut(rest, "`"); ok {
			return name, strings.TrimSpace(text)
		}
	}
	name, text := flag.UnquoteUsage(f)
	return name, text
}

// dashed writes a flag name as the usage does: -o, --output.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// defaultText is a flag's default as the usage shows it, or "" for none.
func defaultText(f *flag.Flag) string {
	if connFlag(f.Name) {
		// Its default is whatever came before the command.
		return ""
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if _, ok := g.Get().(time.Duration); ok {
			def, err := time.ParseDuration(f.DefValue)
			if err != nil || def == 0 {
				return ""
			}
			return display.Duration(def)
		}
	}
	switch f.DefValue {
	case "", "0", "false":
		return ""
	}
	return f.DefValue
}
