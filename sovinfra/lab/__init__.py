"""The built-in lab: real systemd hosts in systemd-nspawn containers on a private bridge."""
