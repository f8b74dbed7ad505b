package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/raftelect/raftelect/storage"
)

func init() { addCommand(newBootstrapCmd) }

func newBootstrapCmd() *cobra.Command {
	var cfgPath string
	cmd := &cobra.Command{
		Use:   "bootstrap --config node.yaml",
		Short: "Prepare this node's data directory for a brand-new cluster (faster first election)",
		Long: `Record in this node's empty data directory that the node has never run.

A node that starts without raft state cannot tell a new cluster from a data
directory that was lost, so it refuses votes for two election timeouts in
case it voted before (docs/safety.md, "The vote guard"); a new cluster's
first election then takes two to three election timeouts. Run this once on
every node of a cluster that has never existed, before their first start,
and the first election takes about one election timeout.

Never run it for a node that has run before, not even with its data lost:
it could then vote twice in one term. It refuses a data directory that holds
any raft state or identity. The mark is cleared at the node's first start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := loadConfig(cmd.Flags(), cfgPath)
			if err != nil {
				return err
			}
			if n.DataDir == "" {
				return usageError(fmt.Errorf("data_dir is empty: a node without a data directory keeps its state in memory and starts fresh every time; bootstrap needs a data directory"))
			}
			st, err := storage.OpenBolt(n.DataDir, storage.BoltOptions{})
			if err != nil {
				return failure(err)
			}
			defer st.Close()
			if err := storage.MarkNeverRan(st, n.Name); err != nil {
				return usageError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s is ready for the first start of a new cluster\n", n.Name, n.DataDir)
			return nil
		},
	}
	cmd.Flags().StringVarP(&cfgPath, "config", "c", "", "YAML node configuration (see examples/node.yaml); RAFTELECT_CONFIG")
	addOverrideFlags(cmd.Flags())
	return cmd
}
