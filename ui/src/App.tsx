import { useQuery } from "@tanstack/react-query";
import { api } from "./api";
import { BackupDashboard } from "./dashboard/BackupDashboard";
import { ErrorBox, Loading } from "./components/states";

/** Checks that the engine started (catalog opened, demo set up) before showing the dashboard. */
export function App() {
  const status = useQuery({ queryKey: ["startup"], queryFn: api.startupStatus });
  if (status.isPending) return <Loading what="Safehold" />;
  if (status.isError)
    return (
      <div className="p-8">
        <h1 className="text-2xl font-bold mb-4">Safehold could not start</h1>
        <ErrorBox error={status.error} />
      </div>
    );
  return (
    <div className="max-w-6xl mx-auto p-6">
      <BackupDashboard />
    </div>
  );
}
