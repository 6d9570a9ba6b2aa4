package twofa

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/emrkit/emrkit/pkg/journal"
)

// Adoption is what Adopt decided for one enrolment of the other host's journal.
type Adoption struct {
	User    string `json:"user"`
	Adopted bool   `json:"adopted"`
	// Reason says why an enrolment was not adopted.
	Reason string `json:"reason,omitempty"`
}

// Adopt takes over into j, after a backup of another host was restored here (a new server,
// after a disaster), the enrolments that host's journal (old) records in database d: a user
// who has 2FA on and whose secret is still the one that emrkit wrote (its digest matches)
// gets the old entry, before-state and all. sync-pins then cycles their PIN again, doctor
// checks it, and an undo gives back what the user had before emrkit, as the old host's would
// have. An enrolment this journal records already (done or pending), or whose secret has
// changed since, is left alone. It returns one Adoption per enrolment of d in old, sorted as old has them.
func Adopt(ctx context.Context, d *DB, j journal.Handle, old []journal.Entry) ([]Adoption, error) {
	db, err := d.Get(ctx)
	if err != nil {
		return nil, err
	}
	var out []Adoption
	for _, e := range old {
		if e.Kind != UserKind || e.State != journal.Done {
			continue
		}
		var u userDesired
		if json.Unmarshal(e.Desired, &u) != nil || u.Database != d.Config.Name {
			continue
		}
		a := Adoption{User: u.User}
		st, err := readUser(ctx, db, u.User)
		switch {
		case err != nil:
			a.Reason = err.Error()
		case !st.enrolled():
			a.Reason = "2FA is off or their secret is not valid"
		case SecretDigest(st.Secret.String) != u.digest():
			a.Reason = "their secret is not the one emrkit wrote there"
		default:
			// A deferred entry (the plan's, waiting for the database) changed nothing: the old
			// enrolment replaces it.
			if have, ok := j.Get(e.ID); ok && (have.State == journal.Done || have.State == journal.Pending) {
				a.Reason = "this host's journal records them already"
				break
			}
			if err := j.Put(e); err != nil {
				return out, fmt.Errorf("adopt %s: %w", u.User, err)
			}
			a.Adopted = true
		}
		out = append(out, a)
	}
	return out, nil
}
