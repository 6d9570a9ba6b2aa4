package openemr

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/emrkit/emrkit/pkg/mariadb"
)

// AccountWarnings reports what "Securing OpenEMR" says of MariaDB's own accounts ("ensure the
// root password is set"), one line per problem found. emrkit reports them and changes
// nothing: accounts are the DBA's, and a wrong guess locks OpenEMR out.
func AccountWarnings(ctx context.Context, db *sql.DB) ([]string, error) {
	checks, err := mariadb.AccountChecks(ctx, db)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, c := range checks {
		if len(c.Found) > 0 {
			out = append(out, fmt.Sprintf("%s: %s; %s", c.Finding, strings.Join(c.Found, ", "), c.Fix))
		}
	}
	return out, nil
}
