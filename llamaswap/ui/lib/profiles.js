// The runtime profiles and switching between them, for the header's picker
// and the Models page's card.
import { useState } from './html.js';
import { useStore } from './store.js';
import { live } from './live.js';
import { sendJSON } from './api.js';

/** `{ profiles, activeProfile, error, activate }`; `activate(null)` deactivates. */
export function useProfiles() {
  const profiles = useStore(live, (s) => s.profiles);
  const activeProfile = useStore(live, (s) => s.activeProfile);
  const [error, setError] = useState('');
  const activate = async (name) => {
    setError('');
    try {
      await sendJSON('PUT', 'api/profiles/active', { name });
    } catch (err) {
      setError(err.message);
    }
  };
  return { profiles, activeProfile, error, activate };
}
