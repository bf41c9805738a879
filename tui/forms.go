package tui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	"charm.land/bubbles/v2/textinput"
	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
)

// confirm asks a yes/no question before an action.
type confirm struct {
	d        *deps
	question string
	act      tea.Cmd
}

func newConfirm(d *deps, question string, act tea.Cmd) *confirm {
	return &confirm{d: d, question: question, act: act}
}

func (c *confirm) update(k tea.KeyPressMsg) (overlay, tea.Cmd) {
	switch {
	case key.Matches(k, c.d.modal.Confirm):
		return nil, c.act
	case key.Matches(k, c.d.modal.Cancel):
		c.d.send(statusLineMsg{text: "cancelled"})
		return nil, nil
	}
	return c, nil
}

func (c *confirm) view(width int) string {
	t := c.d.theme
	yes, no := c.d.modal.Confirm.Help(), c.d.modal.Cancel.Help()
	body := t.Bold.Render(wrap(c.question, min(60, width-6))) + "\n\n" +
		t.Key.Render(yes.Key) + " " + t.Desc.Render(yes.Desc) + "   " + t.Key.Render(no.Key) + " " + t.Desc.Render(no.Desc)
	return t.Box.Render(body)
}

// wrap breaks text into lines of at most width cells at spaces.
func wrap(s string, width int) string {
	if width < 10 {
		width = 10
	}
	var lines []string
	line := ""
	for _, w := range strings.Fields(s) {
		if line != "" && lipgloss.Width(line)+1+lipgloss.Width(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	return strings.Join(append(lines, line), "\n")
}

// form is a small stack of labelled fields: text inputs and toggles.
type form struct {
	d      *deps
	title  string
	note   string // what the form's action does, under the title; "" for none
	labels []string
	inputs []textinput.Model
	toggle map[int]bool // fields that are yes/no toggles, by index
	focus  int
	err    string
}

func newForm(d *deps, title string) *form {
	return &form{d: d, title: title, toggle: map[int]bool{}}
}

func (f *form) addInput(label, value, placeholder string) {
	in := textinput.New()
	in.Prompt = ""
	in.Placeholder = placeholder
	in.SetValue(value)
	in.SetWidth(formInputWidth)
	in.CharLimit = 256
	if len(f.inputs) == 0 {
		in.Focus()
	}
	f.labels = append(f.labels, label)
	f.inputs = append(f.inputs, in)
}

func (f *form) addToggle(label string, on bool) {
	f.toggle[len(f.inputs)] = on
	f.labels = append(f.labels, label)
	f.inputs = append(f.inputs, textinput.New())
}

func (f *form) value(i int) string { return strings.TrimSpace(f.inputs[i].Value()) }

// step is a dialog's first move on a key: Dismiss closes it, saying that
// what was cancelled; any other key goes to handle. The dialog goes on
// with the overlay and command returned unless submitted, when it acts on
// its fields.
func (f *form) step(self overlay, k tea.KeyPressMsg, what string) (next overlay, cmd tea.Cmd, submitted bool) {
	if key.Matches(k, f.d.modal.Dismiss) {
		f.d.send(statusLineMsg{text: what + " cancelled"})
		return nil, nil, false
	}
	submitted, cmd = f.handle(k)
	return self, cmd, submitted
}

// handle moves between fields and edits the focused one; it reports
// whether the form was submitted.
func (f *form) handle(k tea.KeyPressMsg) (submitted bool, cmd tea.Cmd) {
	keys := &f.d.modal
	switch {
	case key.Matches(k, keys.Submit):
		// Enter submits from any field; the fields have defaults, and a
		// confirmation follows.
		return true, nil
	case key.Matches(k, keys.Next):
		f.setFocus((f.focus + 1) % len(f.inputs))
		return false, nil
	case key.Matches(k, keys.Prev):
		f.setFocus((f.focus + len(f.inputs) - 1) % len(f.inputs))
		return false, nil
	}
	if on, isToggle := f.toggle[f.focus]; isToggle {
		switch {
		case key.Matches(k, keys.Yes):
			f.toggle[f.focus] = true
		case key.Matches(k, keys.No):
			f.toggle[f.focus] = false
		case key.Matches(k, keys.Toggle):
			f.toggle[f.focus] = !on
		}
		return false, nil
	}
	f.inputs[f.focus], cmd = f.inputs[f.focus].Update(k)
	return false, cmd
}

func (f *form) setFocus(i int) {
	f.inputs[f.focus].Blur()
	f.focus = i
	if _, isToggle := f.toggle[i]; !isToggle {
		f.inputs[i].Focus()
	}
}

// formLabelWidth is the column of a form's labels, with the marker of the
// focused field before them; the inputs start after it.
const formLabelWidth = 2 + 18

// formInputWidth is an input's width where the terminal has room.
const formInputWidth = 30

func (f *form) view(width int, hint string) string {
	t := f.d.theme
	// The box adds a border and padding: 4 cells, and one of margin on
	// either side. A title naming many nodes, the hint and the inputs
	// fit within, so that the box never runs past the terminal.
	inner := max(10, width-6)
	var lines []string
	lines = append(lines, t.Title.Render(wrap(f.title, min(60, inner))), "")
	if f.note != "" {
		lines = append(lines, t.Muted.Render(wrap(f.note, min(56, inner))), "")
	}
	for i := range f.inputs {
		f.inputs[i].SetWidth(max(1, min(formInputWidth, inner-formLabelWidth-1)))
	}
	for i, label := range f.labels {
		marker := "  "
		if i == f.focus {
			marker = t.Key.Render("› ")
		}
		val := ""
		if on, isToggle := f.toggle[i]; isToggle {
			val = "[ ] no"
			if on {
				val = "[x] yes"
			}
		} else {
			val = f.inputs[i].View()
		}
		lines = append(lines, marker+t.Bold.Render(padRight(label, formLabelWidth-2))+val)
	}
	if f.err != "" {
		lines = append(lines, "", t.StatusErr.Render(wrap(f.err, min(56, inner))))
	}
	lines = append(lines, "")
	// Each of the hint's lines wraps on its own: they say different things.
	for _, l := range strings.Split(hint, "\n") {
		lines = append(lines, t.Muted.Render(strings.Join(wrapSegments(strings.Split(l, " · "), " · ", inner), "\n")))
	}
	return t.Box.Render(strings.Join(lines, "\n"))
}
