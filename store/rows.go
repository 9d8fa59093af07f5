package store

import (
	"database/sql"
	"fmt"
)

// collect reads every row of rows with scan and closes rows; what names
// the read in its errors.
func collect[T any](rows *sql.Rows, what string, scan func(scanner) (*T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, *v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
