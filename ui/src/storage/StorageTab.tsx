import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { HardDrive } from "lucide-react";
import { api, type BackupStorage, type KeyCustody, type StorageChange, type UsageSample, type WriterInfo } from "../api";
import { Badge, Button, Card, CardContent, CardHeader, Progress } from "../components/ui";
import { Empty, ErrorBox, QueryView } from "../components/states";
import { formatFileSize } from "../components/format";
import { DisasterRecovery } from "./DisasterRecovery";
import { AddStorage } from "./AddStorage";
import { useSession } from "../session/Session";
import { queryKeys } from "../api/queries";
import { When } from "../components/When";
import { UsageChart } from "../components/charts";

function where(s: BackupStorage): string {
  const cfg = (s.storage_config ?? {}) as Record<string, unknown>;
  if (typeof cfg.path === "string") return cfg.path;
  if (typeof cfg.url === "string") return cfg.url;
  return s.storage_type;
}

/** The used space over time, with dated axes, sizes, a tooltip and the capacity as a line. */
export function GrowthChart({ samples, capacity }: { samples: UsageSample[]; capacity: number | null }) {
  if (samples.length < 2) return <div className="text-xs text-slate-400">Growth: measured after each backup</div>;
  const last = samples[samples.length - 1];
  return <UsageChart points={samples.map((x) => ({ at: x.at, used: x.used_space }))} capacity={capacity ?? last.total_capacity} />;
}

/** Who can read a storage's backups — and whether the recovery kit that alone opens them was printed. */
export function KeyHolders({ c, s }: { c: KeyCustody; s: BackupStorage }) {
  if (c.problem) return <div className="text-xs text-amber-700" data-testid="key-holders">Keys: not known — {c.problem}</div>;
  if (!c.has_repository) return <div className="text-xs text-slate-500" data-testid="key-holders">Keys: none yet (the first backup into this storage creates its key)</div>;
  const plural = (n: number) => (n > 1 ? "s" : "");
  const holders: string[] = [];
  if (c.super_admins.length) holders.push(`the super admin${plural(c.super_admins.length)} ${c.super_admins.join(", ")}`);
  if (c.in_keychain) holders.push("this workstation's keychain (anyone using Safehold here can restore)");
  else if (c.password && !c.super_admins.length) holders.push("its repository password (given with --password-file; not kept on this workstation)");
  return (
    <div className="text-xs text-slate-500 space-y-0.5" data-testid="key-holders">
      <div>Backups open with: {holders.length ? holders.join("; ") : "the recovery kit only"}</div>
      {c.pending.length > 0 && (
        <div className="text-amber-700">
          Not yet sealed to {c.pending.join(", ")}: done at the next super admin sign-in while this storage is reachable.
        </div>
      )}
      {c.former.length > 0 && <div className="text-amber-700">Still sealed to former super admin{plural(c.former.length)} {c.former.join(", ")}: removed at the next super admin sign-in.</div>}
      <RecoveryKit c={c} s={s} />
      <Writers s={s} />
    </div>
  );
}

/**
 * Whose keys signed the storage's backups. A backup restores only when its writer is approved;
 * whoever may restore approves a writer here (a server that backs up into the same storage).
 */
function Writers({ s }: { s: BackupStorage }) {
  const allowed = useSession().may("backup:restore_data");
  const queryClient = useQueryClient();
  const writers = useQuery({ queryKey: queryKeys.storageWriters(s.id), queryFn: () => api.storageWriters(s.id) });
  const [asked, setAsked] = useState<WriterInfo | null>(null);
  const approve = useMutation({
    mutationFn: (w: WriterInfo) => api.approveWriter(s.id, w.public_key),
    onSuccess: () => {
      setAsked(null);
      void queryClient.invalidateQueries({ queryKey: queryKeys.storageWriters(s.id) });
    },
  });
  if (!writers.data?.length) return null;
  return (
    <div data-testid="writers">
      Written by:{" "}
      {writers.data.map((w) => (
        <span key={w.public_key} className={w.approved ? "mr-2" : "mr-2 text-amber-700"} data-testid="writer" title={`writer key ${w.public_key}`}>
          {w.name} ({w.backups} backup{w.backups === 1 ? "" : "s"}
          {w.approved ? ", approved" : ", not approved: its backups do not restore"})
          {!w.approved && allowed && (
            <Button size="sm" variant="outline" className="ml-1" data-testid="approve-writer" onClick={() => setAsked(w)}>
              Approve…
            </Button>
          )}
        </span>
      ))}
      {asked && (
        <div className="border rounded p-2 bg-amber-50 text-slate-700" data-testid="approve-writer-confirm">
          Approve {asked.name} (key {asked.public_key.slice(0, 16)}…)? Its backups will restore like this workstation&apos;s. Approve only a
          workstation or server you set up to back up into this storage.
          <Button size="sm" className="ml-2" data-testid="approve-writer-yes" disabled={approve.isPending} onClick={() => approve.mutate(asked)}>
            Approve
          </Button>
          <Button size="sm" variant="outline" className="ml-1" onClick={() => setAsked(null)}>
            Cancel
          </Button>
        </div>
      )}
      {approve.isError && <ErrorBox error={approve.error} />}
    </div>
  );
}

/** The recovery kit's state; for whoever may read backups, "Save recovery kit…" while it is not exported. */
function RecoveryKit({ c, s }: { c: KeyCustody; s: BackupStorage }) {
  const allowed = useSession().may("backup:restore_data");
  const queryClient = useQueryClient();
  const [saved, setSaved] = useState<{ path: string; text: string } | null>(null);
  const save = useMutation({
    mutationFn: async () => {
      const path = await api.pickKitFile(`safehold-recovery-kit-${s.storage_name.replace(/[^A-Za-z0-9._-]+/g, "-")}.txt`);
      return path ? { path, text: await api.exportRecoveryKit(s.id, path) } : null;
    },
    onSuccess: (r) => {
      if (!r) return;
      setSaved(r);
      void queryClient.invalidateQueries({ queryKey: queryKeys.storageCustody(s.id) });
    },
  });
  return (
    <>
      <div className={c.recovery_exported ? "" : "text-amber-700"}>
        Recovery kit: {c.recovery_exported ? "exported" : "not exported yet — without it, a lost key loses every backup"}
        {!c.recovery_exported && !allowed && (
          <>
            {" "}
            (a super admin saves it here, or <code>safehold key export-recovery</code>)
          </>
        )}
        {!c.recovery_exported && allowed && (
          <Button size="sm" variant="outline" className="ml-2" data-testid="save-recovery-kit" disabled={save.isPending} onClick={() => save.mutate()}>
            {save.isPending ? "Saving…" : "Save recovery kit…"}
          </Button>
        )}
      </div>
      {saved && (
        <div className="border rounded p-2 bg-slate-50 text-slate-700" data-testid="recovery-kit">
          <div>
            Saved to {saved.path}. Print it and keep it offline, away from this workstation: Safehold will not show it again.
          </div>
          <pre className="whitespace-pre-wrap text-[11px]">{saved.text}</pre>
        </div>
      )}
      {save.isError && <ErrorBox error={save.error} />}
    </>
  );
}

/** A cloud storage's quota and credentials (new credentials are tried before they are kept). */
function EditCloudStorage({ s, saving, onSave }: { s: BackupStorage; saving: boolean; onSave: (c: Partial<StorageChange>) => void }) {
  const [quotaGb, setQuotaGb] = useState(s.total_capacity ? String(s.total_capacity / 1024 ** 3) : "");
  const [keyId, setKeyId] = useState("");
  const [secret, setSecret] = useState("");
  const input = "rounded-md border border-slate-300 px-2 py-1 text-sm";
  const gcs = s.storage_type === "gcp";
  return (
    <form className="flex flex-wrap items-end gap-2 text-sm" data-testid="edit-storage-form"
      onSubmit={(e) => {
        e.preventDefault();
        onSave({
          quota_bytes: quotaGb === "" ? 0 : Math.round(Number(quotaGb) * 1024 ** 3),
          credentials: !keyId && !secret ? null : gcs ? { access_key_id: null, secret_access_key: null, service_account_key: secret } : { access_key_id: keyId || null, secret_access_key: secret || null, service_account_key: null },
        });
      }}>
      <label>Quota (GB, empty: none)<br /><input className={input} data-testid="storage-quota" value={quotaGb} onChange={(e) => setQuotaGb(e.target.value)} /></label>
      {!gcs && <label>New access key id<br /><input className={input} data-testid="storage-key-id" value={keyId} onChange={(e) => setKeyId(e.target.value)} /></label>}
      <label>{gcs ? "New service account key (JSON)" : "New secret key"}<br /><input type="password" className={input} data-testid="storage-secret" value={secret} onChange={(e) => setSecret(e.target.value)} /></label>
      <Button type="submit" size="sm" disabled={saving} data-testid="storage-save">Save</Button>
      <span className="text-xs text-slate-500">New keys are tried on the storage first; the old ones stay if they do not work.</span>
    </form>
  );
}

function StorageRow({ s }: { s: BackupStorage }) {
  const manage = useSession().may("backup:manage_storage");
  const queryClient = useQueryClient();
  const samples = useQuery({ queryKey: queryKeys.storageSamples(s.id), queryFn: () => api.storageSamples(s.id) });
  const custody = useQuery({ queryKey: queryKeys.storageCustody(s.id), queryFn: () => api.storageKeyCustody(s.id) });
  const refresh = () => {
    void queryClient.invalidateQueries({ queryKey: queryKeys.storage });
    void queryClient.invalidateQueries({ queryKey: queryKeys.storageSamples(s.id) });
  };
  const check = useMutation({
    mutationFn: async () => {
      const h = await api.checkStorage(s.id);
      await api.refreshStorageUsage(s.id);
      return h;
    },
    onSuccess: refresh,
  });
  const remove = useMutation({ mutationFn: () => api.removeStorage(s.id), onSuccess: refresh });
  const [confirmRemove, setConfirmRemove] = useState(false);
  const [editing, setEditing] = useState(false);
  const change = useMutation({
    mutationFn: (c: Partial<StorageChange>) => api.updateStorage(s.id, { make_default: false, is_active: null, quota_bytes: null, credentials: null, ...c }),
    onSuccess: () => {
      setEditing(false);
      refresh();
    },
  });
  const pct = s.total_capacity ? Math.round((s.used_space / s.total_capacity) * 100) : 0;
  return (
    <div className="p-4 border rounded-lg space-y-2" data-testid="storage">
      <div className="flex items-center justify-between">
        <div className="flex items-center gap-4">
          <HardDrive className="w-5 h-5 text-blue-500" />
          <div>
            <div className="font-medium">
              {s.storage_name} {s.is_default && <Badge>default</Badge>} {!s.is_active && <Badge variant="secondary">inactive</Badge>}{" "}
              {s.last_health_ok === true && <Badge variant="secondary">healthy</Badge>}
              {s.last_health_ok === false && <Badge variant="destructive">failing</Badge>}
            </div>
            <div className="text-sm text-slate-500">
              {s.storage_type === "local" ? "Local filesystem" : s.storage_type.toUpperCase()} · {where(s)}
            </div>
            <div className="text-xs text-slate-500" data-testid="storage-health">
              Last health check: <When at={s.last_health_check} />
              {s.last_health_message && ` — ${s.last_health_message}`}
            </div>
            {custody.data && <KeyHolders c={custody.data} s={s} />}
          </div>
        </div>
        <div className="text-right space-y-1">
          <div className="text-sm font-medium">
            {formatFileSize(s.used_space)}
            {s.total_capacity ? ` / ${formatFileSize(s.total_capacity)}` : " used"}
          </div>
          {s.total_capacity ? <Progress value={pct} label="storage used" /> : null}
          {manage && (
            <>
              <Button size="sm" variant="outline" data-testid="check-storage" disabled={check.isPending} onClick={() => check.mutate()}>
                {check.isPending ? "Checking…" : "Check now"}
              </Button>
              {!s.is_default && s.is_active && (
                <Button size="sm" variant="outline" data-testid="make-default" disabled={change.isPending} onClick={() => change.mutate({ make_default: true })}>
                  Make default
                </Button>
              )}
              {!(s.is_default && s.is_active) && (
                <Button size="sm" variant="outline" data-testid="toggle-storage" disabled={change.isPending} onClick={() => change.mutate({ is_active: !s.is_active })}
                  title={s.is_active ? "Refuse backups into it (its archives stay readable)" : "Accept backups into it again"}>
                  {s.is_active ? "Deactivate" : "Activate"}
                </Button>
              )}
              {s.storage_type !== "local" && (
                <Button size="sm" variant="outline" data-testid="edit-storage" onClick={() => setEditing((e) => !e)}>Quota and keys</Button>
              )}
              {confirmRemove ? (
                <>
                  <Button size="sm" variant="destructive" onClick={() => remove.mutate()} disabled={remove.isPending} data-testid="remove-storage-confirm">
                    Remove {s.storage_name}
                  </Button>
                  <Button size="sm" variant="ghost" onClick={() => setConfirmRemove(false)}>Keep</Button>
                </>
              ) : (
                <Button size="sm" variant="ghost" onClick={() => setConfirmRemove(true)} title="Remove from Safehold (the files stay)" data-testid="remove-storage">
                  Remove
                </Button>
              )}
            </>
          )}
        </div>
      </div>
      {editing && <EditCloudStorage s={s} saving={change.isPending} onSave={(c) => change.mutate(c)} />}
      {change.isError && <ErrorBox error={change.error} />}
      {samples.data && <GrowthChart samples={samples.data} capacity={s.total_capacity} />}
      {check.isError && <ErrorBox error={check.error} />}
      {remove.isError && <ErrorBox error={remove.error} />}
    </div>
  );
}

export function StorageTab() {
  const { may } = useSession();
  const query = useQuery({ queryKey: queryKeys.storage, queryFn: api.listStorage });
  const [adding, setAdding] = useState(false);
  return (
    <div className="space-y-6">
      <Card>
        <CardHeader title="Storage Management" description="Monitor backup storage usage and health"
          action={may("backup:manage_storage") ? <Button size="sm" variant="outline" data-testid="add-storage" onClick={() => setAdding(true)}>Add storage</Button> : null} />
        <CardContent className="space-y-4">
          {adding && <AddStorage onDone={() => setAdding(false)} />}
          <QueryView query={query} what="storage">
            {(list) =>
              list.length === 0 ? (
                <Empty>No storage configured.</Empty>
              ) : (
                <div className="space-y-4">
                  {list.map((s) => (
                    <StorageRow key={s.id} s={s} />
                  ))}
                </div>
              )
            }
          </QueryView>
        </CardContent>
      </Card>
      {may("backup:manage_all") && <DisasterRecovery />}
    </div>
  );
}
