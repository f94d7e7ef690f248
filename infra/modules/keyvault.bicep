// The Key Vault holding what calbridge resolves by name at run time: each organization's
// signing secret (`org-<org>-signing-secret`, and `-previous` during a rotation), its admin key
// (`org-<org>-admin-key`), its connections' secrets (`org-<org>--<reference>`) and the
// operator key (`calbridge-admin-key`). Access is Azure RBAC only (no access policies); every
// read is kept in the audit log of the Log Analytics workspace.

@description('Key Vault name (3-24 letters, digits and hyphens, globally unique).')
param name string

param location string
param tags object

@description('Log Analytics workspace that receives the vault\'s audit log.')
param logAnalyticsWorkspaceId string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: the Flex Consumption app has no fixed outbound addresses without a virtual network, so a firewall would lock it out; every read needs an Entra ID token and a Key Vault RBAC role
  // checkov:skip=CKV_AZURE_189: public network access stays on for the same reason (no private endpoint without a virtual network)
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // A deleted organization secret can be recovered, never purged early.
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource audit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
