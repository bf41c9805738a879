package cli

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Shell completion for navarch, generated from the commands table, so a
// command or flag added there completes without more work. Node ids and
// pool names are asked of the control plane when a command's first
// argument is one (its synopsis starts with ID or POOL), with whatever
// context, server and token the command line would use.

// flagRE finds the flags in a synopsis: --reason, -o, -l.
var flagRE = regexp.MustCompile(`(?:^|[\s\[|])(--?[a-z][a-z-]*)`)

// connectionFlags are the connection flags every command takes.
var connectionFlags = []string{"--context", "--server", "--ca-cert", "--insecure", "--token"}

// nodeIDs is the shell pipeline that prints the fleet's node ids, one a
// line; it prints nothing when the control plane cannot be reached.
const nodeIDs = `navarch get nodes -o json 2>/dev/null | grep -o '"nodeId": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'`

// poolNames is the shell pipeline that prints the pools' names, one a
// line; only a pool has a "name" in 'get pools -o json'.
const poolNames = `navarch get pools -o json 2>/dev/null | grep -o '"name": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/'`

// completionWords are what completes at each place: the commands, each
// group's subcommands, each command's flags, and what its first argument
// is asked of the control plane with: nodeIDs, poolNames, or nothing.
type completionWords struct {
	top    []string
	groups map[string][]string
	flags  map[string][]string // by command name, "get nodes" or "cordon"
	arg    map[string]string
	// many are the commands that take any number of such arguments
	// (their synopsis starts with ID...), each completed alike.
	many map[string]bool
}

func completion() completionWords {
	w := completionWords{groups: map[string][]string{}, flags: map[string][]string{}, arg: map[string]string{}, many: map[string]bool{}}
	for _, c := range commands {
		group, sub, grouped := strings.Cut(c.name, " ")
		if !slices.Contains(w.top, group) {
			w.top = append(w.top, group)
		}
		if grouped {
			w.groups[group] = append(w.groups[group], sub)
		}
		var flags []string
		for _, m := range flagRE.FindAllStringSubmatch(c.synopsis+" "+c.flags, -1) {
			if !slices.Contains(flags, m[1]) {
				flags = append(flags, m[1])
			}
		}
		w.flags[c.name] = append(flags, connectionFlags...)
		switch {
		case strings.HasPrefix(c.synopsis, "ID"):
			w.arg[c.name] = nodeIDs
			w.many[c.name] = strings.HasPrefix(c.synopsis, "ID...")
		case strings.HasPrefix(c.synopsis, "POOL"):
			w.arg[c.name] = poolNames
		}
	}
	return w
}

// completionScript is the script for shell: bash, zsh or fish.
func completionScript(shell string) (string, error) {
	w := completion()
	switch shell {
	case "bash":
		return bashCompletion(w), nil
	case "zsh":
		// zsh runs bash's completion functions through bashcompinit.
		return "#compdef navarch\nautoload -U +X bashcompinit && bashcompinit\n" + bashCompletion(w), nil
	case "fish":
		return fishCompletion(w), nil
	}
	return "", usagef("completion: %q is not bash, zsh or fish", shell)
}

func bashCompletion(w completionWords) string {
	var b strings.Builder
	b.WriteString("# navarch completion for bash: source <(navarch completion bash)\n")
	b.WriteString("_navarch() {\n")
	b.WriteString("  local cur=${COMP_WORDS[COMP_CWORD]} cmd=${COMP_WORDS[1]} sub=${COMP_WORDS[2]} argpos=2\n")
	b.WriteString("  if [ \"$COMP_CWORD\" -eq 1 ]; then\n")
	fmt.Fprintf(&b, "    COMPREPLY=($(compgen -W %q -- \"$cur\")); return\n", strings.Join(w.top, " "))
	b.WriteString("  fi\n  case \"$cmd\" in\n")
	for _, g := range sortedKeys(w.groups) {
		fmt.Fprintf(&b, "    %s)\n      if [ \"$COMP_CWORD\" -eq 2 ]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n      cmd=\"$cmd $sub\"; argpos=3 ;;\n",
			g, strings.Join(w.groups[g], " "))
	}
	b.WriteString("  esac\n  case \"$cmd\" in\n")
	for _, name := range sortedKeys(w.flags) {
		fmt.Fprintf(&b, "    %q)\n      if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi\n", name, strings.Join(w.flags[name], " "))
		if arg := w.arg[name]; arg != "" {
			at := "-eq"
			if w.many[name] {
				at = "-ge"
			}
			fmt.Fprintf(&b, "      if [ \"$COMP_CWORD\" %s \"$argpos\" ]; then COMPREPLY=($(compgen -W \"$(%s)\" -- \"$cur\")); return; fi\n", at, arg)
		}
		b.WriteString("      ;;\n")
	}
	b.WriteString("  esac\n}\ncomplete -F _navarch navarch\n")
	return b.String()
}

func fishCompletion(w completionWords) string {
	var b strings.Builder
	b.WriteString("# navarch completion for fish: navarch completion fish > ~/.config/fish/completions/navarch.fish\n")
	b.WriteString("complete -c navarch -f\n")
	summary := map[string]string{}
	for _, c := range commands {
		summary[c.name] = c.summary
	}
	for _, top := range w.top {
		desc := summary[top]
		if desc == "" {
			desc = top + " commands"
		}
		fmt.Fprintf(&b, "complete -c navarch -n __fish_use_subcommand -a %s -d %s\n", top, fishQuote(desc))
	}
	for _, g := range sortedKeys(w.groups) {
		for _, sub := range w.groups[g] {
			fmt.Fprintf(&b, "complete -c navarch -n '__fish_seen_subcommand_from %s; and not __fish_seen_subcommand_from %s' -a %s -d %s\n",
				g, strings.Join(w.groups[g], " "), sub, fishQuote(summary[g+" "+sub]))
		}
	}
	for _, name := range sortedKeys(w.flags) {
		cond := "__fish_seen_subcommand_from " + name
		if g, sub, ok := strings.Cut(name, " "); ok {
			cond = "__fish_seen_subcommand_from " + g + "; and __fish_seen_subcommand_from " + sub
		}
		for _, f := range w.flags[name] {
			if long, ok := strings.CutPrefix(f, "--"); ok {
				fmt.Fprintf(&b, "complete -c navarch -n '%s' -l %s\n", cond, long)
			} else {
				fmt.Fprintf(&b, "complete -c navarch -n '%s' -s %s\n", cond, strings.TrimPrefix(f, "-"))
			}
		}
		if arg := w.arg[name]; arg != "" {
			fmt.Fprintf(&b, "complete -c navarch -n '%s' -a %s\n", cond, fishQuote("("+arg+")"))
		}
	}
	return b.String()
}

func fishQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
