// A keychain call that waits — most often a locked "Login" keyring whose unlock prompt is behind
// another window — said in the window, with a Cancel, instead of a job that seems to hang.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import { Button } from "../components/ui";
import { ErrorBox } from "../components/states";

/** A call shorter than this is an ordinary keychain call, not a wait worth a banner. */
const SHOWN_AFTER_SECONDS = 1;

export function KeychainWaitBanner() {
  const queryClient = useQueryClient();
  const waits = useQuery({ queryKey: ["keychain-waits"], queryFn: api.keychainWaits, refetchInterval: 1000, retry: false });
  const cancel = useMutation({
    mutationFn: api.cancelKeychainWaits,
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: ["keychain-waits"] }),
  });
  const long = (waits.data ?? []).filter((w) => w.waited_seconds >= SHOWN_AFTER_SECONDS);
  if (long.length === 0) return cancel.isError ? <ErrorBox error={cancel.error} /> : null;
  const first = long[0];
  const left = Math.max(0, Math.round(first.deadline_seconds - first.waited_seconds));
  return (
    <div role="status" className="flex flex-wrap items-center justify-between gap-2 rounded-md border border-amber-300 bg-amber-50 p-3 text-sm text-amber-900" data-testid="keychain-wait">
      <span>
        Waiting for the OS keychain to be unlocked (to {first.what}{long.length > 1 ? `, and ${long.length - 1} more` : ""}, {Math.round(first.waited_seconds)} s so far):
        unlock the “Login” keyring in its prompt, which may be behind another window. It gives up in {left} s.
      </span>
      <Button size="sm" variant="outline" data-testid="keychain-wait-cancel" onClick={() => cancel.mutate()} disabled={cancel.isPending}>Cancel</Button>
    </div>
  );
}
