// Client-side redaction of secrets in commands and configuration (the server
// redacts too; this is a second line of defence for what the UI shows).

export const MASK = '***';
const SECRET_NAME = /(api[-_]?keys?|secret|passw(or)?d|passwd|credentials?|token)$/i;

/** Whether a flag, variable or key name names a secret. */
export function isSecretName(name) {
  return SECRET_NAME.test(name || '');
}

/**
 * `cmd` with the values of secret-looking flags (`--api-key X`,
 * `--hf-token=X`), environment assignments (`HF_TOKEN=X`) and URL
 * credentials (`https://user:pass@host`) replaced by ***.
 */
export function redactCommand(cmd) {
  if (!cmd) return '';
  const parts = String(cmd).split(/(\s+)/);
  let maskNext = false;
  for (let i = 0; i < parts.length; i += 1) {
    const part = parts[i];
    if (/^\s+$/.test(part) || part === '') continue;
    if (maskNext) {
      maskNext = false;
      if (!part.startsWith('-')) {
        parts[i] = MASK;
        continue;
      }
    }
    const flag = /^(-{1,2}[A-Za-z0-9][\w.-]*)(=(.*))?$/.exec(part);
    if (flag && isSecretName(flag[1].replace(/^-+/, ''))) {
      if (flag[2] !== undefined) parts[i] = `${flag[1]}=${MASK}`;
      else maskNext = true;
      continue;
    }
    const assignment = /^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/.exec(part);
    if (assignment && isSecretName(assignment[1])) {
      parts[i] = `${assignment[1]}=${MASK}`;
      continue;
    }
    parts[i] = part.replace(/(\w+:\/\/[^/\s:@]+):[^@\s/]+@/g, `$1:${MASK}@`);
  }
  return parts.join('');
}

/** A deep copy of `value` with secret-named keys (and apiKeys entries) masked. */
export function redactValue(value, key = '') {
  if (Array.isArray(value)) {
    return value.map((v) => (isSecretName(key) ? MASK : redactValue(v, key)));
  }
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactValue(v, k)]));
  }
  if (isSecretName(key) && value !== null && value !== '' && typeof value !== 'boolean') {
    return MASK;
  }
  if ((key === 'cmd' || key === 'cmdStop') && typeof value === 'string') return redactCommand(value);
  return value;
}
