// Creates a container in a local Azurite (object_store cannot): node azurite-create-container.js PORT NAME
// with NODE_PATH pointing at the node_modules that scripts/deps.sh installed @azure/storage-blob into.
const { BlobServiceClient } = require("@azure/storage-blob");
const [port, name] = process.argv.slice(2);
const key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const conn = `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${key};BlobEndpoint=http://127.0.0.1:${port}/devstoreaccount1;`;
BlobServiceClient.fromConnectionString(conn).createContainer(name).then(() => process.exit(0), (e) => { console.error(e.message); process.exit(1); });
