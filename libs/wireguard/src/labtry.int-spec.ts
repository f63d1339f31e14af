import { WgLab, setPeers, addAddress, removeAddress, serveName, startProber, brownoutOf } from '@ccm/wireguard';
import { it } from 'vitest';
it('try', async () => {
const lab = await WgLab.create(`t${process.pid}`);
try {
  const t0 = performance.now();
  const a = await lab.addNode('a', 1), b = await lab.addNode('b', 2), c = await lab.addNode('c', 3);
  await lab.mesh({ a: ['10.99.0.100/32'] });
  console.log('lab up ms', performance.now() - t0);
  await addAddress(a.iface, '10.99.0.100/32');
  const sa = await serveName(a.netns, 'A', 8080), sb = await serveName(b.netns, 'B', 8080);
  const p = startProber(c.netns, '10.99.0.100', 8080);
  await new Promise(r => setTimeout(r, 500));
  await addAddress(b.iface, '10.99.0.100/32');
  const t1 = performance.now();
  const bl = ['10.99.0.2/32', '10.99.0.100/32'];
  await Promise.all([a, c].map(n => setPeers(n.iface, [{ publicKey: b.keys.publicKey, allowedIps: bl }])).concat(
    setPeers(b.iface, [{ publicKey: a.keys.publicKey, allowedIps: ['10.99.0.1/32'] }])));
  console.log('flip ms', performance.now() - t1);
  await removeAddress(a.iface, '10.99.0.100/32');
  await new Promise(r => setTimeout(r, 500));
  const s = await p.stop();
  console.log('samples', s.length, 'A', s.filter(x=>x.by==='A').length, 'B', s.filter(x=>x.by==='B').length, 'fail', s.filter(x=>!x.by).length, 'brownout', brownoutOf(s, 'A', 'B'));
  sa.kill(); sb.kill();
} finally { await lab.destroy(); }
}, 60000);
