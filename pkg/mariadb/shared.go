package mariadb

import (
	"context"
	"database/sql"
	"errors"

	"github.com/emrkit/emrkit/pkg/config"
	"github.com/emrkit/emrkit/pkg/step"
)

// Shared opens the EMR database on first use and shares the connection among one run's
// steps. A server that is not there, or a database not created yet, defers the steps (the
// EMR is not installed yet); any other failure is an error.
type Shared struct {
	Config config.Database
	db     *sql.DB
}

// Get returns the open database.
func (s *Shared) Get(ctx context.Context) (*sql.DB, error) {
	if s.db != nil {
		return s.db, nil
	}
	db, err := Open(ctx, s.Config)
	if errors.Is(err, ErrUnreachable) || errors.Is(err, ErrNoDatabase) {
		return nil, &step.DeferredError{Reason: err.Error()}
	}
	if err != nil {
		return nil, err
	}
	s.db = db
	return db, nil
}

// Close closes the connection if it was opened.
func (s *Shared) Close() error {
	if s.db == nil {
		return nil
	}
	return s.db.Close()
}
