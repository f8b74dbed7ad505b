package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftelect/raftelect/certs"
	"github.com/raftelect/raftelect/transport"
)

func init() { addCommand(newCertsCmd) }

func newCertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make a development CA and node certificates for mutual TLS",
		Long: `Make a development certificate authority and node certificates, so that a
first setup uses mutual TLS without openssl:

  raftelect certs init  --dir certs
  raftelect certs issue --dir certs --name n1 --host 127.0.0.1 --host n1.example.com

Each node certificate has the node name as CommonName (the identity the
transport checks against every message) and as a DNS name, and every --host
as a SAN; for a peer with a configured identity, give the identity as
--name. A --host that is another member's name or identity would make the
certificate identify neither member. ` + "`certs pin`" + ` prints a certificate's
public-key pin, for public_key_pins in peers. Existing files are never
overwritten without --force. For production, use your own PKI with the same
layout.

An operator certificate, for raftelect status and transfer, is a
client-only certificate for a name that is no node's; list the name in
every node's operators:

  raftelect certs issue --dir certs --operator --name ops`,
	}
	cmd.AddCommand(newCertsInitCmd(), newCertsIssueCmd(), newCertsPinCmd())
	return cmd
}

func newCertsInitCmd() *cobra.Command {
	var (
		dir      string
		force    bool
		validFor time.Duration
	)
	cmd := &cobra.Command{
		Use:   "init --dir DIR",
		Short: "Create a CA: DIR/ca.crt and DIR/ca.key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkValidFor(validFor); err != nil {
				return err
			}
			crt, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
			if err := refuseOverwrite(force, crt, key); err != nil {
				return err
			}
			ca, err := certs.NewCA("raftelect development CA", validFor)
			if err != nil {
				return failure(err)
			}
			keyPEM, err := ca.KeyPEM()
			if err != nil {
				return failure(err)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return failure(err)
			}
			if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
				return failure(err)
			}
			if err := os.WriteFile(crt, ca.CertPEM, 0o644); err != nil {
				return failure(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s (valid for %v)\n", crt, key, validFor)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory for the CA files (created if missing)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	cmd.Flags().DurationVar(&validFor, "valid-for", 10*365*24*time.Hour, "validity of the CA certificate")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

func newCertsIssueCmd() *cobra.Command {
	var (
		dir, name string
		hosts     []string
		force     bool
		operator  bool
		validFor  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "issue --dir DIR --name NODE [--host HOST]... | --dir DIR --operator --name NAME",
		Short: "Issue a node (or operator) certificate: DIR/NAME.crt and DIR/NAME.key, signed by DIR/ca.*",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkValidFor(validFor); err != nil {
				return err
			}
			ca, err := certs.LoadCA(filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key"))
			if err != nil {
				return usageError(fmt.Errorf("%w (run `raftelect certs init --dir %s` first)", err, dir))
			}
			if err := refuseOverwrite(force, filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")); err != nil {
				return err
			}
			if operator {
				if len(hosts) > 0 {
					return usageError(errors.New("--host: an operator certificate is for a client only; it names no host"))
				}
				f, err := ca.WriteOperator(dir, name, validFor)
				if err != nil {
					return failure(err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s for operator %s (client only, valid for %v); add %q to every node's operators\n", f.Cert, f.Key, name, validFor, name)
				return nil
			}
			f, err := ca.WriteNode(dir, name, hosts, validFor)
			if err != nil {
				return failure(err)
			}
			leaf, err := readCert(f.Cert)
			if err != nil {
				return failure(err)
			}
			capped := ""
			if leaf.NotAfter.Equal(ca.Cert.NotAfter) {
				capped = ", capped at the CA's expiry"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s for %s (hosts %v, valid until %s%s)\npublic key pin: %s\n",
				f.Cert, f.Key, name, hosts, leaf.NotAfter.UTC().Format(time.RFC3339), capped, transport.PublicKeyPin(leaf))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory holding ca.crt and ca.key; the node files go there too")
	cmd.Flags().StringVar(&name, "name", "", "node name (or its configured identity): the certificate's CommonName and first DNS SAN")
	cmd.Flags().StringArrayVar(&hosts, "host", nil, "DNS name or IP address the node is reached at (repeat)")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite existing files")
	cmd.Flags().BoolVar(&operator, "operator", false, "issue a client-only certificate for an operator tool (raftelect status); list --name in the nodes' operators")
	cmd.Flags().DurationVar(&validFor, "valid-for", 365*24*time.Hour, "validity of the node certificate")
	_ = cmd.MarkFlagRequired("dir")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newCertsPinCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "pin --cert FILE",
		Short: "Print the public-key pin of a certificate, for public_key_pins in peers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			leaf, err := readCert(file)
			if err != nil {
				return usageError(err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), transport.PublicKeyPin(leaf))
			return nil
		},
	}
	cmd.Flags().StringVar(&file, "cert", "", "PEM certificate file")
	_ = cmd.MarkFlagRequired("cert")
	return cmd
}

// checkValidFor refuses a validity that ends the certificate before it
// starts (exit code 2).
func checkValidFor(d time.Duration) error {
	if d <= 0 {
		return usageError(fmt.Errorf("--valid-for %v: a certificate must be valid for a positive duration (such as 8760h for a year); zero or negative would end it before it starts", d))
	}
	return nil
}

// readCert reads the first certificate of a PEM file.
func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return nil, fmt.Errorf("%s holds no PEM certificate", path)
		}
		if blk.Type == "CERTIFICATE" {
			return x509.ParseCertificate(blk.Bytes)
		}
	}
}

// refuseOverwrite fails if any of paths exists, unless force.
func refuseOverwrite(force bool, paths ...string) error {
	if force {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return usageError(fmt.Errorf("%s exists; not overwriting it without --force", p))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return failure(err)
		}
	}
	return nil
}
