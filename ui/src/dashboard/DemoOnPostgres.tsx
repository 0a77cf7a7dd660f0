// The first launch's offer: a PostgreSQL server answers on this machine, so the demo can be
// copied there, to try every tab's actions on the engine production platforms run (the SQLite
// demo has them all too).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import { Button } from "../components/ui";
import { ErrorBox } from "../components/states";
import { formatCount } from "../components/format";

export const DEMO_OFFER_KEY = ["demo-postgres-offer"] as const;

export function DemoOnPostgres() {
  const queryClient = useQueryClient();
  const offer = useQuery({ queryKey: DEMO_OFFER_KEY, queryFn: api.demoPostgresOffer, retry: false, staleTime: 60_000 });
  const put = useMutation({
    mutationFn: api.putDemoOnPostgres,
    onSuccess: () => void queryClient.invalidateQueries(),
  });
  const dismiss = useMutation({
    mutationFn: api.dismissDemoPostgresOffer,
    onSuccess: () => void queryClient.invalidateQueries({ queryKey: DEMO_OFFER_KEY }),
  });
  if (put.isSuccess) {
    return (
      <div role="status" className="rounded-md border border-green-200 bg-green-50 p-3 text-sm text-green-800" data-testid="demo-postgres-done">
        The demo is on PostgreSQL: {formatCount(put.data.rows)} rows in {put.data.database}, registered as “{put.data.connection}” with the backup
        configuration “{put.data.configuration}”. Run it once from Configurations, then try a tenant restore or a tenant copy on it.
        <button className="ml-2 underline" onClick={() => put.reset()}>Dismiss</button>
      </div>
    );
  }
  if (!offer.data) return null;
  return (
    <div className="flex flex-wrap items-center justify-between gap-3 rounded-md border border-blue-200 bg-blue-50 p-3 text-sm text-blue-900" data-testid="demo-postgres-offer">
      <span>
        A PostgreSQL server answers on {offer.data.server}. Put a copy of the demo there (database “{offer.data.database}”) to try every action on
        PostgreSQL too, as production runs it: restores, tenant restores and tenant migrations on a server.
      </span>
      <span className="flex gap-2">
        <Button size="sm" onClick={() => put.mutate()} disabled={put.isPending} data-testid="demo-postgres-put">{put.isPending ? "Copying…" : "Put the demo on PostgreSQL"}</Button>
        <Button size="sm" variant="ghost" onClick={() => dismiss.mutate()} disabled={dismiss.isPending} data-testid="demo-postgres-dismiss">Not now</Button>
      </span>
      {put.isError && <ErrorBox error={put.error} />}
      {dismiss.isError && <ErrorBox error={dismiss.error} />}
    </div>
  );
}
