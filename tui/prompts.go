package tui

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"
)

// filterMsg gives the active view its filter as typed so far.
type filterMsg struct{ text string }

// filterPrompt is the / prompt. The filter applies as it is typed.
type filterPrompt struct {
	d     *deps
	input textinput.Model
}

// newFilterPrompt edits a view's filter, which reads current now: each
// view keeps its own.
func newFilterPrompt(d *deps, current string) *filterPrompt {
	in := textinput.New()
	in.Prompt = "/"
	in.Placeholder = "text or label=value, space-separated"
	in.CharLimit = 256
	in.SetValue(current)
	in.Focus()
	in.CursorEnd()
	return &filterPrompt{d: d, input: in}
}

func (fp *filterPrompt) update(k tea.KeyPressMsg) (prompt, tea.Cmd) {
	switch {
	case key.Matches(k, fp.d.modal.Submit):
		return nil, nil
	case key.Matches(k, fp.d.modal.Dismiss):
		fp.d.send(filterMsg{})
		return nil, nil
	}
	fp.input, _ = fp.input.Update(k)
	fp.d.send(filterMsg{text: fp.input.Value()})
	return fp, nil
}

func (fp *filterPrompt) view(width int) string {
	fp.input.SetWidth(max(1, width-2))
	return fp.input.View()
}

// commandNames are the : prompt's commands, as help and hints list them:
// the listed views', node, the actions, then the rest; a command that
// takes node ids says so after its name ("cordon ID…": one or more).
// remedies adds those that act on the node on screen, for where there is
// one.
func commandNames(readOnly, remedies bool) []string {
	var names []string
	for _, s := range listedViews() {
		names = append(names, s.name)
	}
	names = append(names, nodeCommand+" ID", heldCommand)
	if !readOnly {
		for _, c := range actionCommands {
			names = append(names, c.name+" ID…")
		}
		names = append(names, "provision")
	}
	if !readOnly && remedies {
		names = append(names, "reset-gpu", "reboot")
	}
	return append(names, "help", "q")
}

// nodeCommand opens the node view on the node it names, as enter on the
// node's row does.
const nodeCommand = "node"

// heldCommand lists the nodes the breaker held back, as H does.
const heldCommand = "held"

// actionCommands are the : commands that act on the nodes they name, as
// the action keys act on the marked rows.
var actionCommands = []struct {
	name string
	act  nodeAction
}{{"cordon", actCordon}, {"uncordon", actUncordon}, {"drain", actDrain}, {"terminate", actTerminate}, {"release", actRelease}}

// actionCommand is the action the command name starts, if it is one.
func actionCommand(name string) (nodeAction, bool) {
	for _, c := range actionCommands {
		if c.name == name {
			return c.act, true
		}
	}
	return 0, false
}

// maxCompletions is how many node ids the prompt offers at once, the
// first in order of those that fit what is typed.
const maxCompletions = 8

// palette is the : command prompt, with history and completion. It lives
// as long as the console, so that the history does.
type palette struct {
	d        *deps
	input    textinput.Model
	history  []string
	pos      int
	views    map[string]string // command → view name
	commands []string          // the command names offered while the first word is typed
	matches  int               // the node ids that fit the id being typed
}

func newPalette(d *deps, listed []viewSpec) *palette {
	p := &palette{d: d, views: map[string]string{}}
	for _, s := range listed {
		for _, c := range append([]string{s.name}, s.aliases...) {
			p.views[c] = s.name
		}
	}
	in := textinput.New()
	in.Prompt = ":"
	// Room for a bulk action on a few dozen nodes named in full.
	in.CharLimit = 1024
	in.ShowSuggestions = true
	in.KeyMap.AcceptSuggestion = d.modal.Complete
	in.KeyMap.NextSuggestion = d.modal.NextMatch
	in.KeyMap.PrevSuggestion = d.modal.PrevMatch
	p.input = in
	p.rebind()
	return p
}

// rebind offers the commands the console allows now: a read-only one
// offers no action.
func (p *palette) rebind() {
	names := commandNames(p.d.readOnly(), true)
	p.input.Placeholder = strings.Join(names, " · ")
	p.commands = p.commands[:0]
	for _, n := range names {
		// A command that takes ids completes with the space before
		// them, so that the ids are offered next.
		if name, _, args := strings.Cut(n, " "); args {
			n = name + " "
		}
		p.commands = append(p.commands, n)
	}
	// "quit" just before the last, "q", so that a typed q offers the
	// whole word.
	p.commands = slices.Insert(p.commands, len(p.commands)-1, "quit")
	p.suggest()
}

// takesNodes reports whether the command name takes node ids here: node
// always, the actions where the console may act.
func (p *palette) takesNodes(name string) bool {
	if name == nodeCommand {
		return true
	}
	_, ok := actionCommand(name)
	return ok && !p.d.readOnly()
}

// suggest offers completions of what is typed: the command names while
// the first word is, then the ids of the fleet's nodes that begin with
// the word being typed, other than those already named.
func (p *palette) suggest() {
	p.matches = 0
	value := p.input.Value()
	name, args, hasArgs := strings.Cut(value, " ")
	if !hasArgs || !p.takesNodes(name) {
		p.input.SetSuggestions(p.commands)
		return
	}
	cut := strings.LastIndex(value, " ") + 1
	named := strings.Fields(args)
	if cut < len(value) {
		named = named[:len(named)-1]
	}
	if name == nodeCommand && len(named) > 0 {
		p.input.SetSuggestions(nil)
		return
	}
	ids, total := completeIDs(p.d.fleet, value[cut:], named, maxCompletions)
	p.matches = total
	lines := make([]string, len(ids))
	for i, id := range ids {
		lines[i] = value[:cut] + id
	}
	p.input.SetSuggestions(lines)
}

// completeIDs is the first limit, in order, of the fleet's node ids that
// begin with prefix, other than those in named, and how many there are in
// all. A fleet sorted by id, as it starts, holds them in one run, found by
// binary search; sorted otherwise, each id is looked at once and only
// limit of them kept. Either way a keystroke never sorts the fleet.
func completeIDs(f *fleet, prefix string, named []string, limit int) (first []string, total int) {
	if f.sortBy == colNode && !f.desc && !f.stale {
		return completeSorted(f.order, prefix, named, limit)
	}
	for id := range f.rows {
		if !strings.HasPrefix(id, prefix) || slices.Contains(named, id) {
			continue
		}
		total++
		if len(first) == limit && id >= first[limit-1] {
			continue
		}
		if len(first) == limit {
			first = first[:limit-1]
		}
		i, _ := slices.BinarySearch(first, id)
		first = slices.Insert(first, i, id)
	}
	return first, total
}

// completeSorted is completeIDs over rows in id order, where the ids
// that begin with prefix are one run.
func completeSorted(rows []*row, prefix string, named []string, limit int) (first []string, total int) {
	start := sort.Search(len(rows), func(i int) bool { return rows[i].id >= prefix })
	end := start + sort.Search(len(rows)-start, func(i int) bool { return !strings.HasPrefix(rows[start+i].id, prefix) })
	run := rows[start:end]
	total = len(run)
	var counted []string
	for _, id := range named {
		_, found := slices.BinarySearchFunc(run, id, func(r *row, id string) int { return strings.Compare(r.id, id) })
		if found && !slices.Contains(counted, id) {
			counted = append(counted, id)
			total--
		}
	}
	for _, r := range run {
		if len(first) == limit {
			break
		}
		if !slices.Contains(named, r.id) {
			first = append(first, r.id)
		}
	}
	return first, total
}

// open empties the prompt and returns it, to be shown.
func (p *palette) open() *palette {
	p.pos = len(p.history)
	p.input.SetValue("")
	p.input.Focus()
	p.suggest()
	return p
}

func (p *palette) update(k tea.KeyPressMsg) (prompt, tea.Cmd) {
	keys := &p.d.modal
	switch {
	case key.Matches(k, keys.Dismiss):
		p.input.Blur()
		return nil, nil
	case key.Matches(k, keys.Older):
		if p.pos > 0 {
			p.pos--
			p.input.SetValue(p.history[p.pos])
			p.input.CursorEnd()
		}
		p.suggest()
		return p, nil
	case key.Matches(k, keys.Newer):
		if p.pos < len(p.history)-1 {
			p.pos++
			p.input.SetValue(p.history[p.pos])
		} else {
			p.pos = len(p.history)
			p.input.SetValue("")
		}
		p.input.CursorEnd()
		p.suggest()
		return p, nil
	case key.Matches(k, keys.Submit):
		cmd := strings.TrimSpace(p.input.Value())
		p.input.Blur()
		if cmd == "" {
			return nil, nil
		}
		if len(p.history) == 0 || p.history[len(p.history)-1] != cmd {
			p.history = append(p.history, cmd)
		}
		return nil, p.run(cmd)
	}
	var c tea.Cmd
	p.input, c = p.input.Update(k)
	p.suggest()
	return p, c
}

// run sends what cmd asks for, and returns the action it starts.
func (p *palette) run(cmd string) tea.Cmd {
	if name, ok := p.views[cmd]; ok {
		p.d.send(showViewMsg{name: name})
		return nil
	}
	if fields := strings.Fields(cmd); fields[0] == nodeCommand {
		p.openNode(fields[1:])
		return nil
	} else if act, ok := actionCommand(fields[0]); ok {
		return p.act(fields[0], act, fields[1:])
	}
	switch cmd {
	case "provision", "p":
		if p.d.readOnly() {
			p.d.refuse()
			return nil
		}
		p.d.send(openOverlayMsg{overlay: newProvisionDialog(p.d)})
	case "reset-gpu", "reboot":
		if p.d.readOnly() {
			p.d.refuse()
			return nil
		}
		p.d.send(remedyMsg{reboot: cmd == "reboot"})
	case heldCommand, heldWord:
		p.d.send(showViewMsg{name: fleetViewName})
		p.d.send(filterMsg{text: heldWord})
	case "help", "h":
		p.d.send(showHelpMsg{})
	case "q", "quit", "q!":
		p.d.send(quitMsg{})
	default:
		p.fail(fmt.Sprintf("unknown command %q (try %s)", cmd, strings.Join(commandNames(p.d.readOnly(), true), ", ")))
	}
	return nil
}

// openNode shows the node view on the one node ids names.
func (p *palette) openNode(ids []string) {
	if len(ids) != 1 {
		p.fail(":node opens one node: :node ID")
		return
	}
	if p.unknown(ids) {
		return
	}
	p.d.send(showViewMsg{name: nodeViewName, arg: ids[0]})
}

// act starts act, which the command name names, on the nodes ids names,
// each once: on one at once, as its key does, on several after asking.
func (p *palette) act(name string, act nodeAction, ids []string) tea.Cmd {
	if p.d.readOnly() {
		p.d.refuse()
		return nil
	}
	if len(ids) == 0 {
		p.fail(fmt.Sprintf(":%s needs one or more node ids: :%s ID…", name, name))
		return nil
	}
	var targets []string
	for _, id := range ids {
		if !slices.Contains(targets, id) {
			targets = append(targets, id)
		}
	}
	if p.unknown(targets) {
		return nil
	}
	return startAction(p.d, act, targets, "node")
}

// unknown says which of ids the fleet lacks, if any, and reports whether
// it did. Before the first snapshot the console knows no node: the
// control plane judges the ids then.
func (p *palette) unknown(ids []string) bool {
	f := p.d.fleet
	if !f.loaded {
		return false
	}
	var missing []string
	for _, id := range ids {
		if _, ok := f.rows[id]; !ok {
			missing = append(missing, id)
		}
	}
	switch len(missing) {
	case 0:
		return false
	case 1:
		p.fail(fmt.Sprintf("no node %s in the fleet; nothing done", missing[0]))
	default:
		p.fail(fmt.Sprintf("no nodes %s in the fleet; nothing done", strings.Join(missing, ", ")))
	}
	return true
}

func (p *palette) fail(text string) { p.d.send(statusLineMsg{text: text, err: true}) }

// view draws the prompt, and how many node ids fit the one being typed
// when there are others than the one offered, at the line's end.
func (p *palette) view(width int) string {
	note := ""
	if p.matches > 1 {
		k := &p.d.modal
		note = p.d.theme.Muted.Render(fmt.Sprintf("  %s match · %s %s · %s/%s others", plural(p.matches, "node"),
			k.Complete.Help().Key, k.Complete.Help().Desc, k.NextMatch.Help().Key, k.PrevMatch.Help().Key))
	}
	// The note gives way to what is typed and the id offered: the prompt,
	// the longer of the two and the cursor after it.
	line := max(ansi.StringWidth(p.input.Value()), ansi.StringWidth(p.input.CurrentSuggestion()))
	if lipgloss.Width(note)+line+2 > width {
		note = ""
	}
	room := max(1, width-lipgloss.Width(note))
	// The input counts what is typed against its width, not the rest of
	// the offered completion drawn after it: the line is fitted here, so
	// that the note stays whole and the line within the terminal.
	p.input.SetWidth(max(1, room-2))
	return padRight(ansi.Truncate(p.input.View(), room, ""), room) + note
}
