// The audit log: filter by operator, action and outcome; export what is shown as CSV.
import { useState } from "react";
import { useMutation, useQuery } from "@tanstack/react-query";
import { api, type AuditFilter } from "../api";
import { Button, Card, CardContent, CardHeader } from "../components/ui";
import { Empty, ErrorBox, QueryView } from "../components/states";
import { queryKeys } from "../api/queries";

const field = "rounded-md border border-slate-300 px-2 py-1 text-sm";

export function AuditTab() {
  const [filter, setFilter] = useState<AuditFilter>({ operator: null, action: null, outcome: null, since: null, until: null, limit: 200 });
  const query = useQuery({ queryKey: queryKeys.audit(filter), queryFn: () => api.listAudit(filter) });
  const exportCsv = useMutation({
    mutationFn: async () => {
      const path = await api.pickCsvFile("safehold-audit.csv");
      return path ? api.exportAudit({ ...filter, limit: null }, path) : null;
    },
  });
  const set = (k: keyof AuditFilter) => (e: { target: { value: string } }) => setFilter((f) => ({ ...f, [k]: e.target.value || null }));
  return (
    <Card>
      <CardHeader
        title="Audit Log"
        description="Every change and every read of backed-up data: who, what, when, and how it ended"
        action={<Button size="sm" variant="outline" data-testid="audit-export" onClick={() => exportCsv.mutate()}>Export CSV</Button>}
      />
      <CardContent>
        <div className="flex flex-wrap gap-2 mb-3">
          <input className={field} placeholder="Operator" aria-label="Operator" data-testid="audit-operator" value={filter.operator ?? ""} onChange={set("operator")} />
          <input className={field} placeholder="Action (e.g. backup.)" aria-label="Action" data-testid="audit-action" value={filter.action ?? ""} onChange={set("action")} />
          <select className={field} aria-label="Outcome" data-testid="audit-outcome" value={filter.outcome ?? ""} onChange={set("outcome")}>
            <option value="">Any outcome</option>
            <option value="success">success</option>
            <option value="failure">failure</option>
            <option value="denied">denied</option>
          </select>
        </div>
        {exportCsv.isSuccess && exportCsv.data !== null && <p className="text-sm text-green-700">{exportCsv.data} entries exported.</p>}
        {exportCsv.isError && <ErrorBox error={exportCsv.error} />}
        <QueryView query={query} what="the audit log">
          {(rows) =>
            rows.length === 0 ? (
              <Empty>No entries match.</Empty>
            ) : (
              <table className="w-full text-sm" data-testid="audit-table">
                <thead>
                  <tr className="text-left text-slate-500"><th>When</th><th>Operator</th><th>Action</th><th>Target</th><th>Outcome</th><th>Detail</th></tr>
                </thead>
                <tbody>
                  {rows.map((r) => (
                    <tr key={r.id} data-testid="audit-row" className={r.outcome === "denied" ? "text-red-700" : r.outcome === "failure" ? "text-amber-700" : ""}>
                      <td className="pr-2 whitespace-nowrap">{r.at.replace("T", " ").slice(0, 19)}</td>
                      <td className="pr-2">{r.operator}</td>
                      <td className="pr-2 font-mono">{r.action}</td>
                      <td className="pr-2">{r.target}</td>
                      <td className="pr-2">{r.outcome}</td>
                      <td>{r.detail}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )
          }
        </QueryView>
      </CardContent>
    </Card>
  );
}
