import { useQuery } from "@tanstack/react-query";
import { api } from "./api";
import { BackupDashboard } from "./dashboard/BackupDashboard";
import { ErrorBox, Loading } from "./components/states";
import { SessionProvider, SignIn, useSessionInfo } from "./session/Session";
import { queryKeys } from "./api/queries";

/** Checks that the engine started (catalog opened, demo set up), then who is signed in, before
 * showing the dashboard. */
export function App() {
  const status = useQuery({ queryKey: queryKeys.startup, queryFn: api.startupStatus });
  const session = useSessionInfo();
  if (status.isPending) return <Loading what="Safehold" />;
  if (status.isError)
    return (
      <div className="p-8">
        <h1 className="text-2xl font-bold mb-4">Safehold could not start</h1>
        <ErrorBox error={status.error} />
      </div>
    );
  if (session.isPending) return <Loading what="the session" />;
  if (session.isError)
    return (
      <div className="p-8">
        <ErrorBox error={session.error} />
      </div>
    );
  if (!session.data.needs_setup && !session.data.operator) return <SignIn info={session.data} />;
  return (
    <SessionProvider info={session.data}>
      <div className="max-w-6xl mx-auto p-6">
        <BackupDashboard />
      </div>
    </SessionProvider>
  );
}
