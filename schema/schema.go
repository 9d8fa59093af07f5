// Package schema holds the database migrations, embedded into the binary and
// applied with goose.
package schema

import "embed"

// FS holds the SQL migrations, named NNNNN_description.sql.
//
//go:embed *.sql
var FS embed.FS
