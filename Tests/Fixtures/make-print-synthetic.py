# Builds the print-synthetic fixture: every item type print knows, written into a copy of
# the one-slot-v2 golden meta.img (usage: python3 make-print-synthetic.py META.IMG).
# print.out and print-S.out in the archive are the output of the original scoutfs print
# (utils built from versity/scoutfs) on the result.
import struct, sys, random
random.seed(7)
LG=65536; SM=4096
# crc32c table
T=[]
for i in range(256):
    c=i
    for _ in range(8): c=(c>>1)^0x82F63B78 if c&1 else c>>1
    T.append(c)
def crc32c(b):
    c=0xffffffff
    for x in b: c=T[(c^x)&0xff]^(c>>8)
    return c
path=sys.argv[1]
f=open(path,'r+b')
f.seek(16*SM); sup=bytearray(f.read(SM))
fsid=struct.unpack_from('<Q',sup,8)[0]
def hdr(buf,magic,blkno,seq=5):
    struct.pack_into('<IQQQ',buf,4,magic,fsid,seq,blkno)
def seal_write(buf,blkno,size):
    struct.pack_into('<I',buf,0,crc32c(bytes(buf[4:])))
    f.seek(blkno*size); f.write(buf)
def key(zone,first=0,typ=0,second=0,third=0,fourth=0):
    return struct.pack('<QQQBBB5x',first,second,third,fourth,zone,typ)
def keysort(k):
    first,second,third,fourth,zone,typ=struct.unpack('<QQQBBB5x',k)
    return (zone,first,typ,second,third,fourth)
MAXKEY=b'\xff'*27+b'\x00'*5
def btree(blkno,level,items,seq=5):
    # items: list of (key, value bytes, seq, flags)
    buf=bytearray(LG); hdr(buf,0xe597f96d,blkno,seq)
    items=sorted(items,key=lambda it:keysort(it[0]))
    n=len(items)
    slots=list(range(n)); random.shuffle(slots)   # array position of each sorted item
    offs=[48+s*56 for s in slots]
    vend = LG-3024 if level==0 else LG
    vo=vend; tib=0
    links={}
    def build(lo,hi,parent):
        if lo>hi: return 0,0
        mid=(lo+hi)//2
        l,lh=build(lo,mid-1,mid)
        r,rh=build(mid+1,hi,mid)
        h=max(lh,rh)+1
        links[mid]=(parent,l,r,h)
        return offs[mid],h
    root,_=build(0,n-1,None)
    for i,(k,v,s,fl) in enumerate(items):
        p,l,r,h=links[i]
        rel=lambda o: 0 if not o else o-32
        po= 0 if p is None else offs[p]-32
        if len(v):
            vo-= (len(v)+7)//8*8
            buf[vo:vo+len(v)]=v
            vof=vo
        else: vof=0
        struct.pack_into('<HHHBx',buf,offs[i],po,rel(l),rel(r),h)
        buf[offs[i]+8:offs[i]+40]=k
        struct.pack_into('<QHHB3x',buf,offs[i]+40,s,vof,len(v),fl)
        tib+=56+(len(v)+7)//8*8
    struct.pack_into('<HHHHB',buf,32,root-32 if root else 0,n,tib,vo-(48+n*56),level)
    if level==0:
        for i in range(n):
            b=(i*397+11)%1512
            struct.pack_into('<H',buf,LG-3024+b*2,offs[i])
    seal_write(buf,blkno,LG)
def ref(b,s=5): return struct.pack('<QQ',b,s)
def root(b,h,s=5): return struct.pack('<QQB7x',b,s,h)
def allochead(b,total,first,flags=0,s=5): return struct.pack('<QQQII',b,s,total,first,flags)
def allocroot(total,flags,b,h): return struct.pack('<QI4x',total,flags)+root(b,h)
def alist(blkno,nxt,start,nr,blknos):
    buf=bytearray(LG); hdr(buf,0x8a93ac83,blkno)
    buf[32:48]=ref(nxt) if nxt else ref(0,0)
    struct.pack_into('<II',buf,48,start,nr)
    for i,b in enumerate(blknos):
        if 56+(start+i)*8+8<=LG: struct.pack_into('<Q',buf,56+(start+i)*8,b)
    seal_write(buf,blkno,LG)
def sre(h,i,d): return struct.pack('<QQQ',h,i,d)
def srf(first,last,b,blocks,ents,height): return first+last+ref(b)+struct.pack('<QQB7x',blocks,ents,height)
def enc_entries(ents):
    out=bytearray(); prev=(0,0,0)
    for e in ents:
        lengths=0; body=bytearray()
        for i in range(3):
            d=(e[i]-prev[i])&(2**64-1)
            s=d-(1<<64) if d>>63 else d
            z=((s<<1)^(s>>63))&(2**64-1)
            nb=(z.bit_length()+7)>>3
            body+=z.to_bytes(8,'little')[:nb]
            lengths|=nb<<(i*4)
        out+=struct.pack('<H',lengths)+body
        prev=e
    return out
def srchleaf(blkno,ents,bad_entry_nr=None):
    buf=bytearray(LG); hdr(buf,0x897e4a7d,blkno)
    e=enc_entries(ents)
    buf[32:56]=sre(*ents[0]); buf[56:80]=sre(*ents[-1]); buf[80:104]=sre(*ents[-1])
    struct.pack_into('<II',buf,104,len(ents) if bad_entry_nr is None else bad_entry_nr,len(e))
    buf[112:112+len(e)]=e
    seal_write(buf,blkno,LG)
def srchparent(blkno,refs):
    buf=bytearray(LG); hdr(buf,0xb23a2a05,blkno)
    for i,b in refs: buf[32+i*16:48+i*16]=ref(b)
    seal_write(buf,blkno,LG)

def inode(size,nlink,mode,proj=None):
    v=struct.pack('<9Q6I',size,11,12,13,14,15,16,17,18,nlink,1000,1001,mode,0x801,2)
    for t in [(1700000000,5),(1700000001,123456789),(1700000002,0),(1700000003,7)]: v+=struct.pack('<QI4x',*t)
    if proj is not None: v+=struct.pack('<Q',proj)
    return v
def dirent(ino,h,pos,t,name): return struct.pack('<QQQB7x',ino,h,pos,t)+name
fsleaf1=[
 (key(4,0,4,5,1),b'',3,0),(key(4,0,8,6,2),b'',3,0),(key(4,0,6,7,3),b'',3,0),
 (key(8,9,4,77),b'',4,0),(key(8,9,5,78),b'',4,0),
 (key(10,0,4,0xdeadbeefcafe,3),struct.pack('<QQQQBBB3B3B7x',1,2,3,1000,7,2,1,1,2,3,4,5,6),5,0),
 (key(12,1,0,2,3),struct.pack('<qq',-5,2),6,0),
 (key(14,0x0312345678,0,0x9abcdef012345678,0x1122334455667788,0x99),b'',7,0),
]
fsleaf2=[
 (key(16,1,4),inode(4096,3,0o40755,proj=42),8,0),
 (key(16,1,8,0x12345678abcd,1,0),struct.pack('<HB5x',11,8)+b'user.abc'+b'hello world',9,0),
 (key(16,1,8,0x12345678abcd,1,1),b'morebytes',9,0),
 (key(16,1,12,0x1111,2),dirent(5,0x1111,2,4,b'file\x01name'),10,0),
 (key(16,1,16,2),dirent(5,0x1111,2,4,b'file\x01name'),10,0),
 (key(16,5,20,1,2),dirent(5,0x1111,2,4,b'file\x01name'),10,0),
 (key(16,6,12,0x2222,3),dirent(6,0x2222,3,2,b'x'*300),10,0),
 (key(16,5,24,0),b'/some/target\x00',11,0),
 (key(16,5,24,1),b'more\x7f',11,0),
 (key(16,5,28,10,3),struct.pack('<QB7x',100,2),12,0),
 (key(16,5,28,20,1),struct.pack('<QB7x',0,1),12,1),
 (key(16,7,4),b'',13,1),
 (key(16,7,99),b'abc',13,0),
 (key(20,1,4),b'',13,0),
]
btree(2001,0,fsleaf1); btree(2002,0,fsleaf2)
btree(2000,1,[(fsleaf1[-1][0] if False else max((i[0] for i in fsleaf1),key=keysort),ref(2001),0,0),(MAXKEY,ref(2002),0,0)])
# mounted clients
mc=lambda ip,port,fl: struct.pack('<HHI24xB7x',1,port,ip,fl)
btree(2010,0,[(key(28,0x1234),mc(0x7f000001,42000,1),1,0),(key(28,0xabcdef0123),mc(0x0a000002,0,0),1,0),(key(28,0x5),b'12345678',1,0)])
# log merge
K1=key(16,1,4); K2=key(16,100,0)
btree(2020,0,[
 (key(44),K1+struct.pack('<QQQ',3,2,99),1,0),
 (key(44,1),b'short',1,0),
 (key(48,5),K1+K2,1,0),
 (key(52,0x77),allochead(0,0,0)*2+root(10,2)+root(11,1)+K1+K2+struct.pack('<QQQQ',5,0x77,6,1),1,0),
 (key(56,0x77),allochead(0,0,0)*2+root(12,1)+K1+K2+K2+struct.pack('<QQQ',0x88,7,3),1,0),
 (key(60,1),root(13,3)+K1+struct.pack('<Q',8),1,0),
 (key(64),b'x',1,0),
])
# srch files
ents=[(0x1000+i*7,1000+i,i*3) for i in range(40)]
srchleaf(2031,ents[:20]); srchleaf(2032,ents[20:])
srchparent(2030,[(0,2031),(3,2032)])
srchleaf(2033,ents[:5])
f1=srf(sre(*ents[0]),sre(*ents[-1]),2030,2,40,2)
f2=srf(sre(*ents[0]),sre(*ents[4]),2033,1,5,1)
compact=allochead(0,0,0)*2+struct.pack('<QBB6x',9,2,0x3)+f2+(f2+struct.pack('<QQ',1,2))+(f1+struct.pack('<QQ',3,4))+(b'\0'*104)*2
assert len(compact)==584,len(compact)
btree(2040,0,[(key(32,0,4,1,2),f2,1,0),(key(32,0,8,3,4),f1,1,0),(key(32,0,12,5,6),compact,1,0),(key(32,0,16,7,8),b'short',1,0)])
# log trees: alloc lists, data_avail btree, srch file, item root
alist(2050,2051,0,30,[3000+i for i in range(10)]+[3100+2*i for i in range(20)])
alist(2051,0,8000,10,[4000+i for i in range(10)])
alist(2052,0,9000,5,[1,2,3])
btree(2053,0,[(key(36,5099),b'',1,0),(key(36,5099-0,0,0) if False else key(36,5099,0,100),b'',1,0),(key(40,2**64-1-2,0,5099,100),b'',1,0)])
srchleaf(2054,ents[:3])
btree(2055,0,fsleaf1[:3]+[(key(16,9,4),inode(1,1,0o100644,proj=0)[:160],3,0)])
lt=allochead(2050,40,30)+allochead(2052,5,5)+root(2055,1)+ref(2056)+allocroot(100,1,2053,1)+allocroot(0,0,0,0)+srf(sre(*ents[0]),sre(*ents[2]),2054,1,3,1)
lt+=struct.pack('<Q',8192)+struct.pack('<16Q',*([0b1011]+[0]*14+[1<<63]))
lt+=struct.pack('<qqqQQQQQ',-3,-1,7,8,9,0xfeed,2,1)
assert len(lt)==472
btree(2060,0,[(key(24,0xfeed,0,2),lt,1,0)])
# server freed list
alist(2070,0,0,3,[10,11,12])
# super
sup[784:816]=allochead(2070,3,3)
sup[848:872]=root(2000,2)
sup[872:896]=root(2060,1)
sup[896:920]=root(2020,1)
sup[920:944]=root(2010,1)
sup[944:968]=root(2040,1)
seal_write(sup,16,SM)
f.close()
