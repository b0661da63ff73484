// Drives the drkit LiveKit stand-in through LiveKit's official Node server SDK
// (livekit-server-sdk) and prints one JSON object of what came back, for the Rust test
// (tests/node.rs) to check. Arguments come in the environment: LIVEKIT_URL,
// LIVEKIT_API_KEY, LIVEKIT_API_SECRET. The Rust side has already joined participant
// "ada" to room "joined".
import {
  AgentDispatchClient,
  EgressClient,
  EncodedFileOutput,
  IngressClient,
  IngressInput,
  RoomServiceClient,
  SipClient,
} from 'livekit-server-sdk';

const url = process.env.LIVEKIT_URL;
const key = process.env.LIVEKIT_API_KEY;
const secret = process.env.LIVEKIT_API_SECRET;
const out = {};

// An SDK error as the Rust test reads it.
async function failure(promise) {
  try {
    await promise;
    return { ok: true };
  } catch (e) {
    return { ok: false, status: e.status, code: e.code ?? null, message: e.message };
  }
}

const rooms = new RoomServiceClient(url, key, secret);
const created = await rooms.createRoom({ name: 'node-room', emptyTimeout: 120, metadata: 'm1' });
const upserted = await rooms.createRoom({ name: 'node-room', maxParticipants: 5 });
out.room = {
  sid: created.sid,
  sameSid: upserted.sid === created.sid,
  emptyTimeout: upserted.emptyTimeout,
  maxParticipants: upserted.maxParticipants,
  metadata: upserted.metadata,
  creationTime: String(created.creationTime),
};
out.listed = (await rooms.listRooms()).map((r) => r.name);
out.listedByName = (await rooms.listRooms(['node-room', 'missing'])).map((r) => r.name);
out.metadata = (await rooms.updateRoomMetadata('node-room', 'm2')).metadata;
const participants = await rooms.listParticipants('joined');
out.participants = participants.map((p) => ({ identity: p.identity, sid: p.sid, state: p.state }));
out.participant = (await rooms.getParticipant('joined', 'ada')).name;
const updated = await rooms.updateParticipant('joined', 'ada', {
  metadata: 'from-node',
  name: 'Ada (node)',
  attributes: { team: 'blue' },
});
out.updated = { name: updated.name, metadata: updated.metadata, attributes: updated.attributes };
out.missingParticipant = await failure(rooms.getParticipant('joined', 'nobody'));

const egress = new EgressClient(url, key, secret);
const file = new EncodedFileOutput({ filepath: '/rec/node.mp4' });
const started = await egress.startRoomCompositeEgress('node-room', { file }, { layout: 'grid' });
out.egress = {
  id: started.egressId,
  status: started.status,
  roomName: started.roomName,
  requestCase: started.request.case,
  layout: started.request.value.layout,
};
out.egressListed = (await egress.listEgress({ roomName: 'node-room' })).length;
out.egressStopped = (await egress.stopEgress(started.egressId)).status;
out.egressMissingRoom = await failure(egress.startRoomCompositeEgress('no-room', { file }));

const ingress = new IngressClient(url, key, secret);
const ing = await ingress.createIngress(IngressInput.RTMP_INPUT, {
  name: 'cam',
  roomName: 'node-room',
  participantIdentity: 'cam-1',
});
out.ingress = { id: ing.ingressId, streamKey: ing.streamKey, url: ing.url };
out.ingressListed = (await ingress.listIngress({ roomName: 'node-room' })).map((i) => i.ingressId);
await ingress.deleteIngress(ing.ingressId);
out.ingressAfterDelete = (await ingress.listIngress()).length;
out.ingressMissing = await failure(ingress.deleteIngress(ing.ingressId));

const sip = new SipClient(url, key, secret);
const inbound = await sip.createSipInboundTrunk('in', ['+15550100']);
const outbound = await sip.createSipOutboundTrunk('out', 'sip.example.org', ['+15550199']);
const rule = await sip.createSipDispatchRule(
  { type: 'individual', roomPrefix: 'call-' },
  { name: 'calls', trunkIds: [inbound.sipTrunkId] },
);
out.sip = {
  inbound: inbound.sipTrunkId,
  outbound: outbound.sipTrunkId,
  rule: rule.sipDispatchRuleId,
  ruleTrunks: rule.trunkIds,
  ruleCase: rule.rule?.rule?.case ?? null,
  inboundListed: (await sip.listSipInboundTrunk()).map((t) => t.sipTrunkId),
  outboundListed: (await sip.listSipOutboundTrunk()).map((t) => t.sipTrunkId),
  rulesListed: (await sip.listSipDispatchRule()).map((r) => r.sipDispatchRuleId),
};
await sip.deleteSipDispatchRule(rule.sipDispatchRuleId);
await sip.deleteSipTrunk(outbound.sipTrunkId);
out.sip.rulesAfterDelete = (await sip.listSipDispatchRule()).length;
out.sip.outboundAfterDelete = (await sip.listSipOutboundTrunk()).length;

const agents = new AgentDispatchClient(url, key, secret);
const dispatch = await agents.createDispatch('node-room', 'helper', { metadata: '{"a":1}' });
out.dispatch = { id: dispatch.id, agentName: dispatch.agentName, room: dispatch.room };
out.dispatchListed = (await agents.listDispatch('node-room')).map((d) => d.agentName).sort();
await agents.deleteDispatch(dispatch.id, 'node-room');
out.dispatchAfterDelete = (await agents.listDispatch('node-room')).map((d) => d.agentName);

await rooms.removeParticipant('joined', 'ada');
await rooms.deleteRoom('node-room');
out.deleteMissing = await failure(rooms.deleteRoom('node-room'));
out.roomsAtEnd = (await rooms.listRooms()).map((r) => r.name);

const wrong = new RoomServiceClient(url, key, 'not-the-secret-not-the-secret-xx');
out.wrongSecret = await failure(wrong.listRooms());

console.log(JSON.stringify(out));
