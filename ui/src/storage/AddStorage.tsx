// Add a storage: a local folder (chosen with the native picker) or a cloud bucket — S3 and
// S3-compatible (custom endpoint), Azure Blob, Google Cloud Storage. Credentials go to the OS
// keychain, never to the catalog.
import { useState } from "react";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api } from "../api";
import { Button } from "../components/ui";
import { ErrorBox } from "../components/states";
import { queryKeys } from "../api/queries";

const field = "w-full rounded-md border border-slate-300 px-3 py-2 text-sm";
type Kind = "local" | "s3" | "az" | "gs";

export function AddStorage({ onDone }: { onDone: () => void }) {
  const queryClient = useQueryClient();
  const [kind, setKind] = useState<Kind>("local");
  const [name, setName] = useState("");
  const [path, setPath] = useState("");
  const [url, setUrl] = useState("");
  const [endpoint, setEndpoint] = useState("");
  const [region, setRegion] = useState("");
  const [quotaGb, setQuotaGb] = useState("");
  const [keyId, setKeyId] = useState("");
  const [secret, setSecret] = useState("");
  const save = useMutation({
    mutationFn: () =>
      kind === "local"
        ? api.addLocalStorage(name, path, false)
        : api.addRemoteStorage({
            name,
            url,
            endpoint: endpoint || null,
            region: region || null,
            quota_bytes: quotaGb ? Math.round(Number(quotaGb) * 1024 ** 3) : null,
            credentials:
              kind === "gs"
                ? secret ? { access_key_id: null, secret_access_key: null, service_account_key: secret } : null
                : keyId || secret ? { access_key_id: keyId || null, secret_access_key: secret || null, service_account_key: null } : null,
            is_default: false,
          }),
    onSuccess: () => {
      void queryClient.invalidateQueries({ queryKey: queryKeys.storage });
      onDone();
    },
  });
  const prefix = { s3: "s3://bucket/prefix", az: "az://container/prefix", gs: "gs://bucket/prefix", local: "" }[kind];
  return (
    <div className="rounded-md border border-slate-200 p-4 space-y-2 text-sm" data-testid="add-storage-form">
      <div className="grid grid-cols-2 gap-2">
        <div>
          <label className="block font-medium mb-1" htmlFor="st-kind">Kind</label>
          <select id="st-kind" className={field} value={kind} onChange={(e) => setKind(e.target.value as Kind)}>
            <option value="local">Local folder</option>
            <option value="s3">S3 or S3-compatible (MinIO, Ceph, Garage, R2)</option>
            <option value="az">Azure Blob</option>
            <option value="gs">Google Cloud Storage</option>
          </select>
        </div>
        <div>
          <label className="block font-medium mb-1" htmlFor="st-name">Name</label>
          <input id="st-name" className={field} value={name} onChange={(e) => setName(e.target.value)} placeholder="Offsite" />
        </div>
      </div>
      {kind === "local" ? (
        <div className="flex gap-2 items-end">
          <div className="flex-1">
            <label className="block font-medium mb-1" htmlFor="st-path">Folder</label>
            <input id="st-path" className={field} value={path} onChange={(e) => setPath(e.target.value)} placeholder="/mnt/backups" />
          </div>
          <Button size="sm" variant="outline" onClick={async () => { const d = await api.pickDirectory("Choose the folder for backups"); if (d) setPath(d); }}>
            Choose folder…
          </Button>
        </div>
      ) : (
        <>
          <div>
            <label className="block font-medium mb-1" htmlFor="st-url">Location</label>
            <input id="st-url" className={field} value={url} onChange={(e) => setUrl(e.target.value)} placeholder={prefix} />
          </div>
          <div className="grid grid-cols-3 gap-2">
            <input aria-label="Endpoint" className={field} value={endpoint} onChange={(e) => setEndpoint(e.target.value)} placeholder="endpoint (optional)" />
            <input aria-label="Region" className={field} value={region} onChange={(e) => setRegion(e.target.value)} placeholder="region (optional)" />
            <input aria-label="Quota in GB" className={field} value={quotaGb} onChange={(e) => setQuotaGb(e.target.value)} placeholder="quota GB (optional)" />
          </div>
          <div className="grid grid-cols-2 gap-2">
            {kind !== "gs" && (
              <input aria-label="Access key id" className={field} value={keyId} onChange={(e) => setKeyId(e.target.value)}
                placeholder={kind === "az" ? "account name" : "access key id"} />
            )}
            <input aria-label="Secret" type="password" className={field} value={secret} onChange={(e) => setSecret(e.target.value)}
              placeholder={kind === "az" ? "account key" : kind === "gs" ? "service account key (JSON)" : "secret access key"} />
          </div>
          <p className="text-xs text-slate-500">
            The key is kept in the OS keychain. Left empty, the provider's usual environment variables are used.
          </p>
        </>
      )}
      {save.isError && <ErrorBox error={save.error} />}
      <div className="flex gap-2">
        <Button size="sm" data-testid="save-storage" disabled={!name || save.isPending || (kind === "local" ? !path : !url)} onClick={() => save.mutate()}>
          Add storage
        </Button>
        <Button size="sm" variant="ghost" onClick={onDone}>Cancel</Button>
      </div>
    </div>
  );
}
