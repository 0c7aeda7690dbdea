/* test_upnp.c - the UPnP-IGD text codecs (csrc/p2p_upnp.c): M-SEARCH bytes, LOCATION from a
 * miniupnpd-shaped SSDP reply, URL splitting, the control-URL scanner over rootDesc texts
 * (WANIPConnection:2 as miniupnpd 2.3 advertises it, WANPPPConnection:1, hostile ones), the
 * SOAP requests byte for byte (design12 section 3.4), and 200 / 500+718 / 500+725 replies. */
#include "t.h"
#include "../csrc/p2pnet.h"
#include "../csrc/p2p_upnp.h"
#include "simnet.h"

static void test_msearch(void)
{
    uint8_t b[256];
    const char *want = "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
                       "MAN: \"ssdp:discover\"\r\nMX: 1\r\n"
                       "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n";
    size_t n = p2p_ssdp_msearch(b, sizeof b);
    T_EQ_INT(n, 137);
    T_EQ_INT(strlen(want), 137);
    T_EQ_MEM(b, want, 137);
    T_EQ_INT(p2p_ssdp_msearch(b, 136), 0);
}

static const char SSDP_REPLY[] =
    "HTTP/1.1 200 OK\r\n"
    "CACHE-CONTROL: max-age=120\r\n"
    "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
    "USN: uuid:e25dcf97-1eb6-4e3a-a37a-3a8f4316a8d5::urn:schemas-upnp-org:device:"
    "InternetGatewayDevice:1\r\n"
    "EXT:\r\n"
    "SERVER: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
    "LOCATION: http://10.0.1.1:5000/rootDesc.xml\r\n"
    "OPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n"
    "01-NLS: 1\r\n"
    "BOOTID.UPNP.ORG: 1\r\n"
    "CONFIGID.UPNP.ORG: 1337\r\n"
    "\r\n";

static int loc(const char *text, char *url, size_t cap)
{
    return p2p_ssdp_location((const uint8_t *)text, strlen(text), url, cap);
}

static void test_location(void)
{
    char url[256];
    T_EQ_INT(loc(SSDP_REPLY, url, sizeof url), 0);
    T_CHECK(strcmp(url, "http://10.0.1.1:5000/rootDesc.xml") == 0);
    /* header names in any case, bare LF, no space after the colon */
    T_EQ_INT(loc("http/1.1 200 OK\nlocation:http://10.0.1.1/x.xml\n\n", url, sizeof url), 0);
    T_CHECK(strcmp(url, "http://10.0.1.1/x.xml") == 0);
    /* too small a buffer, no LOCATION, not a 200, LOCATION after the headers end */
    T_EQ_INT(loc(SSDP_REPLY, url, 33), -1);
    T_EQ_INT(loc(SSDP_REPLY, url, 34), 0);
    T_EQ_INT(loc("HTTP/1.1 200 OK\r\nST: x\r\n\r\n", url, sizeof url), -1);
    T_CHECK(url[0] == '\0');
    T_EQ_INT(loc("HTTP/1.1 404 Not Found\r\nLOCATION: http://10.0.1.1/\r\n\r\n", url, 256), -1);
    T_EQ_INT(loc("HTTP/1.1 200 OK\r\n\r\nLOCATION: http://10.0.1.1/\r\n", url, 256), -1);
    T_EQ_INT(loc("NOTIFY * HTTP/1.1\r\nLOCATION: http://10.0.1.1/\r\n\r\n", url, 256), -1);
    /* a value with a control character or quote */
    T_EQ_INT(loc("HTTP/1.1 200 OK\r\nLOCATION: http://10.0.1.1/a\"b\r\n\r\n", url, 256), -1);
    T_EQ_INT(loc("HTTP/1.1 200 OK\r\nLOCATION: http://10.0.1.1/a\x01\r\n\r\n", url, 256), -1);
}

static void test_url(void)
{
    p2p_addr a;
    char path[64];
    T_EQ_INT(p2p_upnp_url("http://10.0.1.1:5000/rootDesc.xml", &a, path, sizeof path), 0);
    p2p_addr want = simnet_addr("10.0.1.1:5000");
    T_CHECK(p2p_addr_equal(&a, &want));
    T_CHECK(strcmp(path, "/rootDesc.xml") == 0);
    T_EQ_INT(p2p_upnp_url("HTTP://10.0.1.1/d", &a, path, sizeof path), 0);
    T_EQ_INT(a.port, 80);
    T_EQ_INT(p2p_upnp_url("http://10.0.1.1:5000", &a, path, sizeof path), 0);
    T_CHECK(strcmp(path, "/") == 0);
    T_EQ_INT(p2p_upnp_url("http://[fe80::1]:5000/d.xml", &a, path, sizeof path), 0);
    T_EQ_INT(a.family, P2P_AF_INET6);
    T_EQ_INT(a.port, 5000);
    T_EQ_INT(p2p_upnp_url("http://[fe80::1]/d.xml", &a, path, sizeof path), 0);
    T_EQ_INT(a.port, 80);
    T_EQ_INT(p2p_upnp_url("https://10.0.1.1/", &a, path, sizeof path), -1);
    T_EQ_INT(p2p_upnp_url("http://router.lan:5000/", &a, path, sizeof path), -1);
    T_EQ_INT(p2p_upnp_url("http://10.0.1.1:99999/", &a, path, sizeof path), -1);
    T_EQ_INT(p2p_upnp_url("http://10.0.1.1:5000/a b", &a, path, sizeof path), -1);
    T_EQ_INT(p2p_upnp_url("http:///x", &a, path, sizeof path), -1);
    T_EQ_INT(p2p_upnp_url("http://10.0.1.1/rootDesc.xml", &a, path, 13), -1);
    T_EQ_INT(p2p_upnp_url("http://[fe80::1]x/", &a, path, sizeof path), -1);
}

/* miniupnpd 2.3's description, shortened: IGD:2 with WANIPConnection:2 at /ctl/IPConn,
 * and a WANPPPConnection:1 listed first to check the choice. */
static const char ROOTDESC[] =
    "<?xml version=\"1.0\"?>\r\n"
    "<root xmlns=\"urn:schemas-upnp-org:device-1-0\" configId=\"1337\">"
    "<specVersion><major>1</major><minor>1</minor></specVersion>"
    "<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType>"
    "<friendlyName>Debian router</friendlyName>"
    "<serviceList><service><serviceType>urn:schemas-microsoft-com:service:OSInfo:1</serviceType>"
    "<serviceId>urn:microsoft-com:serviceId:OSInfo1</serviceId><controlURL>/ctl/OS</controlURL>"
    "<eventSubURL>/evt/OS</eventSubURL><SCPDURL>/osInfo.xml</SCPDURL></service></serviceList>"
    "<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:2</deviceType>"
    "<serviceList><service>"
    "<serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType>"
    "<controlURL>/ctl/CmnIfCfg</controlURL></service></serviceList>"
    "<deviceList><device>"
    "<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType>"
    "<serviceList>"
    "<service>\r\n  <serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType>"
    "\r\n  <controlURL>/ctl/PPPConn</controlURL></service>"
    "<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType>"
    "<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId>"
    "<SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>/ctl/IPConn</controlURL>"
    "<eventSubURL>/evt/IPConn</eventSubURL></service>"
    "</serviceList></device></deviceList></device></deviceList>"
    "<presentationURL>http://10.0.1.1/</presentationURL></device></root>";

static int ctl(const char *xml, char *path, char *svc)
{
    return p2p_upnp_control(xml, strlen(xml), path, 64, svc, 80);
}

static void test_control(void)
{
    char path[64], svc[80];
    T_EQ_INT(ctl(ROOTDESC, path, svc), 0);
    T_CHECK(strcmp(path, "/ctl/IPConn") == 0);
    T_CHECK(strcmp(svc, "urn:schemas-upnp-org:service:WANIPConnection:2") == 0);
    /* PPP only, with prefixed tags and the control URL before the type, absolute */
    T_EQ_INT(ctl("<r:root><r:service><r:controlURL> http://10.0.1.1:5000/ctl/PPP </r:controlURL>"
                 "<r:serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1"
                 "</r:serviceType></r:service></r:root>",
                 path, svc),
             0);
    T_CHECK(strcmp(path, "/ctl/PPP") == 0);
    T_CHECK(strcmp(svc, "urn:schemas-upnp-org:service:WANPPPConnection:1") == 0);
    /* none of ours; tags outside a service; truncated text */
    T_EQ_INT(ctl("<root><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1"
                 "</serviceType><controlURL>/ctl/L3F</controlURL></service></root>",
                 path, svc),
             -1);
    T_EQ_INT(ctl("<serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>"
                 "<controlURL>/x</controlURL>",
                 path, svc),
             -1);
    T_EQ_INT(p2p_upnp_control(ROOTDESC, 900, path, 64, svc, 80), -1);
    /* hostile values: header injection, markup, a relative path, a too-long one */
    T_EQ_INT(ctl("<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1"
                 "</serviceType><controlURL>/ctl\r\nX-Evil: 1</controlURL></service>",
                 path, svc),
             -1);
    T_EQ_INT(ctl("<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1\"x"
                 "</serviceType><controlURL>/ctl</controlURL></service>",
                 path, svc),
             -1);
    T_EQ_INT(ctl("<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1"
                 "</serviceType><controlURL>ctl/IPConn</controlURL></service>",
                 path, svc),
             -1);
    char big[400];
    snprintf(big, sizeof big,
             "<service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1"
             "</serviceType><controlURL>/%0100d</controlURL></service>",
             0);
    T_EQ_INT(ctl(big, path, svc), -1);
}

/* The body of design12 section 3.4, sent as one line. */
#define ENVELOPE_HEAD                                                                          \
    "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"" \
    " s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>"
#define SVC1 "urn:schemas-upnp-org:service:WANIPConnection:1"

static void check_request(const uint8_t *b, size_t n, const char *action, const char *body)
{
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "POST /ctl/IPConn HTTP/1.1\r\nHost: 10.0.1.1:5000\r\n"
                      "Content-Type: text/xml; charset=\"utf-8\"\r\n"
                      "SOAPAction: \"" SVC1 "#%s\"\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      action, strlen(body));
    T_EQ_INT(n, (size_t)hn + strlen(body));
    T_EQ_MEM(b, head, (size_t)hn);
    T_EQ_MEM(b + hn, body, strlen(body));
}

static void test_soap_requests(void)
{
    uint8_t b[2048];
    p2p_addr client = simnet_addr("10.0.1.2:43000");
    size_t n = p2p_upnp_request(b, sizeof b, P2P_UPNP_ADD, SVC1, "10.0.1.1:5000", "/ctl/IPConn",
                                43000, 43000, &client, 3600);
    check_request(b, n, "AddPortMapping",
                  ENVELOPE_HEAD "<u:AddPortMapping xmlns:u=\"" SVC1 "\">"
                                "<NewRemoteHost></NewRemoteHost><NewExternalPort>43000"
                                "</NewExternalPort><NewProtocol>UDP</NewProtocol>"
                                "<NewInternalPort>43000</NewInternalPort><NewInternalClient>"
                                "10.0.1.2</NewInternalClient><NewEnabled>1</NewEnabled>"
                                "<NewPortMappingDescription>p2pnet</NewPortMappingDescription>"
                                "<NewLeaseDuration>3600</NewLeaseDuration></u:AddPortMapping>"
                                "</s:Body></s:Envelope>");
    n = p2p_upnp_request(b, sizeof b, P2P_UPNP_DELETE, SVC1, "10.0.1.1:5000", "/ctl/IPConn", 43001,
                         0, NULL, 0);
    check_request(b, n, "DeletePortMapping",
                  ENVELOPE_HEAD "<u:DeletePortMapping xmlns:u=\"" SVC1 "\">"
                                "<NewRemoteHost></NewRemoteHost><NewExternalPort>43001"
                                "</NewExternalPort><NewProtocol>UDP</NewProtocol>"
                                "</u:DeletePortMapping></s:Body></s:Envelope>");
    n = p2p_upnp_request(b, sizeof b, P2P_UPNP_GET_IP, SVC1, "10.0.1.1:5000", "/ctl/IPConn", 0, 0,
                         NULL, 0);
    check_request(b, n, "GetExternalIPAddress",
                  ENVELOPE_HEAD "<u:GetExternalIPAddress xmlns:u=\"" SVC1 "\">"
                                "</u:GetExternalIPAddress></s:Body></s:Envelope>");
    /* refused: short buffer, ADD without an IPv4 client, unsafe strings, unknown action */
    size_t full = n;
    T_EQ_INT(p2p_upnp_request(b, full - 1, P2P_UPNP_GET_IP, SVC1, "10.0.1.1:5000", "/ctl/IPConn", 0,
                              0, NULL, 0),
             0);
    T_EQ_INT(p2p_upnp_request(b, sizeof b, P2P_UPNP_ADD, SVC1, "10.0.1.1:5000", "/ctl/IPConn", 1, 1,
                              NULL, 0),
             0);
    T_EQ_INT(p2p_upnp_request(b, sizeof b, P2P_UPNP_GET_IP, SVC1, "10.0.1.1:5000\r\nX: y",
                              "/ctl/IPConn", 0, 0, NULL, 0),
             0);
    T_EQ_INT(p2p_upnp_request(b, sizeof b, P2P_UPNP_GET_IP, SVC1 "\"", "10.0.1.1:5000", "/c", 0, 0,
                              NULL, 0),
             0);
    T_EQ_INT(p2p_upnp_request(b, sizeof b, 9, SVC1, "10.0.1.1:5000", "/c", 0, 0, NULL, 0), 0);
    /* the rootDesc fetch */
    n = p2p_upnp_get(b, sizeof b, "10.0.1.1:5000", "/rootDesc.xml");
    const char *get = "GET /rootDesc.xml HTTP/1.1\r\nHost: 10.0.1.1:5000\r\n"
                      "Connection: close\r\n\r\n";
    T_EQ_INT(n, strlen(get));
    T_EQ_MEM(b, get, n);
    T_EQ_INT(p2p_upnp_get(b, n, "10.0.1.1:5000", "/rootDesc.xml"), 0);
    T_EQ_INT(p2p_upnp_get(b, sizeof b, "10.0.1.1:5000", "rootDesc.xml"), 0);
}

#define FAULT(code, text)                                                                   \
    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n"   \
    "Connection: close\r\nServer: Debian/12 UPnP/1.1 MiniUPnPd/2.3.1\r\n\r\n"               \
    "<?xml version=\"1.0\"?>\r\n<s:Envelope "                                               \
    "xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" "                                \
    "s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><s:Fault>"       \
    "<faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>"           \
    "<UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>" code "</errorCode>" \
    "<errorDescription>" text "</errorDescription></UPnPError></detail></s:Fault></s:Body>" \
    "</s:Envelope>\r\n"

static int reply(const char *text, int *http, int *err, p2p_addr *ip)
{
    return p2p_upnp_reply((const uint8_t *)text, strlen(text), http, err, ip);
}

static void test_soap_replies(void)
{
    int http, err;
    p2p_addr ip;
    T_EQ_INT(reply("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n\r\n<?xml version=\"1.0\"?>"
                   "<s:Envelope><s:Body><u:AddPortMappingResponse xmlns:u=\"" SVC1
                   "\"/></s:Body></s:Envelope>",
                   &http, &err, &ip),
             0);
    T_EQ_INT(http, 200);
    T_EQ_INT(err, 0);
    T_EQ_INT(ip.family, 0);
    T_EQ_INT(reply(FAULT("718", "ConflictInMappingEntry"), &http, &err, &ip), 0);
    T_EQ_INT(http, 500);
    T_EQ_INT(err, 718);
    T_EQ_INT(reply(FAULT("725", "OnlyPermanentLeasesSupported"), &http, &err, NULL), 0);
    T_EQ_INT(err, 725);
    T_EQ_INT(reply(FAULT("7x5", "bad"), &http, &err, NULL), 0);
    T_EQ_INT(err, 0);
    T_EQ_INT(reply("HTTP/1.1 200 OK\r\n\r\n<s:Envelope><s:Body><u:GetExternalIPAddressResponse>"
                   "<NewExternalIPAddress>11.0.1.2</NewExternalIPAddress>"
                   "</u:GetExternalIPAddressResponse></s:Body></s:Envelope>",
                   &http, &err, &ip),
             0);
    p2p_addr want = simnet_addr("11.0.1.2:1");
    want.port = 0;
    T_CHECK(p2p_addr_equal(&ip, &want));
    T_EQ_INT(reply("HTTP/1.1 200 OK\r\n\r\n<NewExternalIPAddress>11.0.1.256"
                   "</NewExternalIPAddress>",
                   &http, &err, &ip),
             0);
    T_EQ_INT(ip.family, 0);
    T_EQ_INT(reply("HTTP/1.0 404 Not Found\r\n\r\n", &http, &err, &ip), 0);
    T_EQ_INT(http, 404);
    T_EQ_INT(reply("HTTP/1.1 20", &http, &err, &ip), -1);
    T_EQ_INT(http, 0);
    T_EQ_INT(reply("HTTP/1.1 2000 OK\r\n", &http, &err, &ip), -1);
    T_EQ_INT(reply("SIP/2.0 200 OK\r\n", &http, &err, &ip), -1);
    T_EQ_INT(reply("HTTP/1.1 200", NULL, NULL, NULL), 0);
}

/* ---- captured from miniupnpd 2.3.1 (Debian 12) in a namespace lab: WAN 11.0.1.2, LAN
 * 10.0.1.1, our host 10.0.1.2, port 43000 (the requests were this file's codec's own) ---- */

static const char CAP_SSDP[] =
    "HTTP/1.1 200 OK\r\n"
    "CACHE-CONTROL: max-age=120\r\n"
    "ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n"
    "USN: uuid:e25dcf97-1eb6-4e3a-a37a-3a8f4316a8d5::urn:schemas-upnp-org:device:InternetGate"
    "wayDevice:1\r\n"
    "EXT:\r\n"
    "SERVER: Debian/6.18.44-fc-v782 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
    "LOCATION: http://10.0.1.1:5000/rootDesc.xml\r\n"
    "OPT: \"http://schemas.upnp.org/upnp/1/0/\"; ns=01\r\n"
    "01-NLS: 1796024373\r\n"
    "BOOTID.UPNP.ORG: 1796024373\r\n"
    "CONFIGID.UPNP.ORG: 1337\r\n"
    "\r\n";
static const char CAP_ROOTDESC[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/xml; charset=\"utf-8\"\r\n"
    "Connection: close\r\n"
    "Content-Length: 3089\r\n"
    "Server: Debian/6.18.44-fc-v782 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
    "Ext:\r\n"
    "\r\n"
    "<?xml version=\"1.0\"?>\r\n"
    "<root xmlns=\"urn:schemas-upnp-org:device-1-0\" configId=\"1337\"><specVersion><major>1<"
    "/major><minor>1</minor></specVersion><device><deviceType>urn:schemas-upnp-org:device:Int"
    "ernetGatewayDevice:2</deviceType><friendlyName>Debian router</friendlyName><manufacturer"
    ">Debian</manufacturer><manufacturerURL>http://www.debian.org/</manufacturerURL><modelDes"
    "cription>Debian router</modelDescription><modelName>Debian router</modelName><modelNumbe"
    "r>1</modelNumber><modelURL>http://www.debian.org/</modelURL><serialNumber>00000000</seri"
    "alNumber><UDN>uuid:e25dcf97-1eb6-4e3a-a37a-3a8f4316a8d5</UDN><serviceList><service><serv"
    "iceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><serviceId>urn:upnp"
    "-org:serviceId:L3Forwarding1</serviceId><SCPDURL>/L3F.xml</SCPDURL><controlURL>/ctl/L3F<"
    "/controlURL><eventSubURL>/evt/L3F</eventSubURL></service><service><serviceType>urn:schem"
    "as-upnp-org:service:DeviceProtection:1</serviceType><serviceId>urn:upnp-org:serviceId:De"
    "viceProtection1</serviceId><SCPDURL>/DP.xml</SCPDURL><controlURL>/ctl/DP</controlURL><ev"
    "entSubURL>/evt/DP</eventSubURL></service></serviceList><deviceList><device><deviceType>u"
    "rn:schemas-upnp-org:device:WANDevice:2</deviceType><friendlyName>WANDevice</friendlyName"
    "><manufacturer>MiniUPnP</manufacturer><manufacturerURL>http://miniupnp.free.fr/</manufac"
    "turerURL><modelDescription>WAN Device</modelDescription><modelName>WAN Device</modelName"
    "><modelNumber>20221221</modelNumber><modelURL>http://miniupnp.free.fr/</modelURL><serial"
    "Number>00000000</serialNumber><UDN>uuid:e25dcf97-1eb6-4e3a-a37a-3a8f4316a8d6</UDN><UPC>0"
    "00000000000</UPC><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANComm"
    "onInterfaceConfig:1</serviceType><serviceId>urn:upnp-org:serviceId:WANCommonIFC1</servic"
    "eId><SCPDURL>/WANCfg.xml</SCPDURL><controlURL>/ctl/CmnIfCfg</controlURL><eventSubURL>/ev"
    "t/CmnIfCfg</eventSubURL></service></serviceList><deviceList><device><deviceType>urn:sche"
    "mas-upnp-org:device:WANConnectionDevice:2</deviceType><friendlyName>WANConnectionDevice<"
    "/friendlyName><manufacturer>MiniUPnP</manufacturer><manufacturerURL>http://miniupnp.free"
    ".fr/</manufacturerURL><modelDescription>MiniUPnP daemon</modelDescription><modelName>Min"
    "iUPnPd</modelName><modelNumber>20221221</modelNumber><modelURL>http://miniupnp.free.fr/<"
    "/modelURL><serialNumber>00000000</serialNumber><UDN>uuid:e25dcf97-1eb6-4e3a-a37a-3a8f431"
    "6a8d7</UDN><UPC>000000000000</UPC><serviceList><service><serviceType>urn:schemas-upnp-or"
    "g:service:WANIPConnection:2</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</s"
    "erviceId><SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>/ctl/IPConn</controlURL><eventSubURL"
    ">/evt/IPConn</eventSubURL></service><service><serviceType>urn:schemas-upnp-org:service:W"
    "ANIPv6FirewallControl:1</serviceType><serviceId>urn:upnp-org:serviceId:WANIPv6Firewall1<"
    "/serviceId><SCPDURL>/WANIP6FC.xml</SCPDURL><controlURL>/ctl/IP6FCtl</controlURL><eventSu"
    "bURL>/evt/IP6FCtl</eventSubURL></service></serviceList></device></deviceList></device></"
    "deviceList><presentationURL>http://10.0.1.1/</presentationURL></device></root>";
static const char CAP_ADD_OK[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/xml; charset=\"utf-8\"\r\n"
    "Connection: close\r\n"
    "Content-Length: 263\r\n"
    "Server: Debian/6.18.44-fc-v782 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
    "Ext:\r\n"
    "\r\n"
    "<?xml version=\"1.0\"?>\r\n"
    "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http"
    "://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:AddPortMappingResponse xmlns:u=\"urn:"
    "schemas-upnp-org:service:WANIPConnection:2\"/></s:Body></s:Envelope>\r\n";
static const char CAP_FAULT_718[] =
    "HTTP/1.1 500 Internal Server Error\r\n"
    "Content-Type: text/xml; charset=\"utf-8\"\r\n"
    "Connection: close\r\n"
    "Content-Length: 406\r\n"
    "Server: Debian/6.18.44-fc-v782 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
    "Ext:\r\n"
    "\r\n"
    "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http"
    "://schemas.xmlsoap.org/soap/encoding/\"><s:Body><s:Fault><faultcode>s:Client</faultcode>"
    "<faultstring>UPnPError</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:cont"
    "rol-1-0\"><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescr"
    "iption></UPnPError></detail></s:Fault></s:Body></s:Envelope>";
static const char CAP_GET_IP[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/xml; charset=\"utf-8\"\r\n"
    "Connection: close\r\n"
    "Content-Length: 354\r\n"
    "Server: Debian/6.18.44-fc-v782 UPnP/1.1 MiniUPnPd/2.3.1\r\n"
    "Ext:\r\n"
    "\r\n"
    "<?xml version=\"1.0\"?>\r\n"
    "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http"
    "://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:GetExternalIPAddressResponse xmlns:u="
    "\"urn:schemas-upnp-org:service:WANIPConnection:2\"><NewExternalIPAddress>11.0.1.2</NewEx"
    "ternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>\r\n";

static void test_miniupnpd_captures(void)
{
    char url[256], path[64], svc[80];
    int http, err;
    p2p_addr a, ip;
    T_EQ_INT(sizeof CAP_SSDP - 1, 436);
    T_EQ_INT(p2p_ssdp_location((const uint8_t *)CAP_SSDP, sizeof CAP_SSDP - 1, url, sizeof url), 0);
    T_CHECK(strcmp(url, "http://10.0.1.1:5000/rootDesc.xml") == 0);
    T_EQ_INT(p2p_upnp_url(url, &a, path, sizeof path), 0);
    p2p_addr want = simnet_addr("10.0.1.1:5000");
    T_CHECK(p2p_addr_equal(&a, &want));
    /* the whole HTTP reply of the description */
    T_EQ_INT(
        p2p_upnp_reply((const uint8_t *)CAP_ROOTDESC, sizeof CAP_ROOTDESC - 1, &http, &err, NULL),
        0);
    T_EQ_INT(http, 200);
    T_EQ_INT(
        p2p_upnp_control(CAP_ROOTDESC, sizeof CAP_ROOTDESC - 1, path, sizeof path, svc, sizeof svc),
        0);
    T_CHECK(strcmp(path, "/ctl/IPConn") == 0);
    T_CHECK(strcmp(svc, "urn:schemas-upnp-org:service:WANIPConnection:2") == 0);
    T_EQ_INT(reply(CAP_ADD_OK, &http, &err, &ip), 0);
    T_EQ_INT(http, 200);
    T_EQ_INT(err, 0);
    T_EQ_INT(reply(CAP_FAULT_718, &http, &err, &ip), 0);
    T_EQ_INT(http, 500);
    T_EQ_INT(err, 718);
    T_EQ_INT(reply(CAP_GET_IP, &http, &err, &ip), 0);
    T_EQ_INT(http, 200);
    want = simnet_addr("11.0.1.2:1");
    want.port = 0;
    T_CHECK(p2p_addr_equal(&ip, &want));
}

int main(void)
{
    T_RUN(test_msearch);
    T_RUN(test_location);
    T_RUN(test_url);
    T_RUN(test_control);
    T_RUN(test_soap_requests);
    T_RUN(test_soap_replies);
    T_RUN(test_miniupnpd_captures);
    return t_summary("test_upnp");
}
