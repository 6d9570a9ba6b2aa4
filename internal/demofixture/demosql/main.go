// Command demosql prints the SQL of a demofixture table, for hosts reached only through the
// mariadb client (`make demo`'s chroot): go run ./internal/demofixture/demosql ROWS [SEED].
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/emrkit/emrkit/internal/demofixture"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: demosql ROWS [SEED]")
		os.Exit(2)
	}
	rows, err := strconv.Atoi(os.Args[1])
	seed := int64(1)
	if err == nil && len(os.Args) == 3 {
		seed, err = strconv.ParseInt(os.Args[2], 10, 64)
	}
	if err != nil || rows < 1 {
		fmt.Fprintf(os.Stderr, "demosql: %v: give a positive number of rows and an integer seed\n", os.Args[1:])
		os.Exit(2)
	}
	for _, q := range demofixture.Statements(rows, seed) {
		fmt.Printf("%s;\n", q)
	}
}
