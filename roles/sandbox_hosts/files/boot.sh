#!/bin/sh
# PID 2 of a sandbox host (under podman's init): what cloud-init does on an EC2 instance
# for the key pair, then sshd in the foreground.
#   SANDBOX_USER, SANDBOX_AUTHORIZED_KEY, SANDBOX_ADDRESS, SANDBOX_PORT from the environment.
set -eu
if ! id "$SANDBOX_USER" >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash "$SANDBOX_USER"
  # Not locked ('!'), so that sshd admits key logins without PAM; no password works either.
  usermod --password '*' "$SANDBOX_USER"
fi
home=$(getent passwd "$SANDBOX_USER" | cut -d: -f6)
install -d -m 0700 -o "$SANDBOX_USER" -g "$SANDBOX_USER" "$home/.ssh"
printf '%s\n' "$SANDBOX_AUTHORIZED_KEY" >"$home/.ssh/authorized_keys"
chown "$SANDBOX_USER:$SANDBOX_USER" "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$SANDBOX_USER" >/etc/sudoers.d/90-sandbox-user
chmod 0440 /etc/sudoers.d/90-sandbox-user
mkdir -p /run/sshd
ssh-keygen -A >/dev/null
# No PAM (pam_loginuid fails in containers), keys only, loopback only.
exec /usr/sbin/sshd -D -e -p "$SANDBOX_PORT" -o ListenAddress="$SANDBOX_ADDRESS" \
  -o UsePAM=no -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o PermitRootLogin=no
